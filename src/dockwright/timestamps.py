"""Timestamps as dockerd reads them: moby ``api/types/time`` (``GetTimestamp``, ``ParseTimestamps``).

A timestamp given to the API (``since``/``until`` of logs and events, the ``until`` filter of the
prune endpoints) is one of

* a Go duration (``10m``, ``1h30m``, ``1.5h``, ``-10s``), meaning that long before a reference time;
* an RFC 3339 date-time, full or shortened (``2006-01-02T15:04:05.999999999Z07:00``,
  ``2006-01-02T15:04Z``, ``2006-01-02T15``, ``2006-01-02Z07:00``, ``2006-01-02``), read in the
  reference time's zone when it carries no zone of its own;
* Unix seconds with an optional fraction (``1136073600``, ``1136073600.000000001``).

This module also owns a port of Go's ``time.ParseDuration`` (with Go's error messages), which the
builder needs for ``HEALTHCHECK --interval=…``. Every error is an :class:`InvalidArgument` worded as
dockerd words it.
"""

from __future__ import annotations

import math
import time as _time
from decimal import Decimal

from .errors import InvalidArgument

__all__ = [
    "go_quote",
    "get_timestamp",
    "parse_timestamps",
    "parse_timestamp",
    "parse_go_duration",
    "parse_go_duration_ns",
    "format_go_duration",
    "human_duration",
    "parse_int64",
]

# ---------------------------------------------------------------------------------------------
# Go helpers


def _time_quote(s: str) -> str:
    """Go's ``time.quote``: like ``strconv.Quote`` but escaping every non-ASCII byte as ``\\xNN``."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if cp >= 0x80 or cp < 0x20:
            for b in ch.encode("utf-8", "surrogatepass"):
                out.append(f"\\x{b:02x}")
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote`` (also what ``fmt``'s ``%q`` prints for a string)."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        escaped = _GO_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif 0xD800 <= cp <= 0xDFFF:
            out.append("\\ufffd")
        elif ch.isprintable():
            out.append(ch)
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


_INT64_MAX = (1 << 63) - 1
_INT64_MIN = -(1 << 63)


def parse_int64(s: str) -> int:
    """Go's ``strconv.ParseInt(s, 10, 64)``; raises ValueError with Go's message."""
    digits = s
    neg = False
    if digits[:1] in ("+", "-"):
        neg = digits[0] == "-"
        digits = digits[1:]
    if not digits or not all("0" <= c <= "9" for c in digits):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(s)}: invalid syntax")
    n = int(digits)
    if neg:
        n = -n
    if n > _INT64_MAX or n < _INT64_MIN:
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(s)}: value out of range")
    return n


# ---------------------------------------------------------------------------------------------
# time.ParseDuration

_NS = 1
_US = 1000 * _NS
_MS = 1000 * _US
_S = 1000 * _MS
_M = 60 * _S
_H = 60 * _M

_UNITS = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,  # U+00B5 micro sign
    "\u03bcs": _US,  # U+03BC Greek small letter mu
    "ms": _MS,
    "s": _S,
    "m": _M,
    "h": _H,
}

_U63 = 1 << 63


def parse_go_duration_ns(s: str) -> int:
    """Go's ``time.ParseDuration``: the duration in nanoseconds, or ValueError with Go's message.

    The grammar is ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`` with the units ns, us (µs, μs), ms, s, m, h.
    """
    orig = s
    invalid = f"time: invalid duration {_time_quote(orig)}"
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise ValueError(invalid)
    d = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise ValueError(invalid)
        # leadingInt
        i = 0
        v = 0
        while i < len(s) and "0" <= s[i] <= "9":
            if v > _U63 // 10:
                raise ValueError(invalid)
            v = v * 10 + (ord(s[i]) - 48)
            if v > _U63:
                raise ValueError(invalid)
            i += 1
        pre = i != 0
        s = s[i:]
        f = 0
        scale = 1.0
        post = False
        if s and s[0] == ".":
            s = s[1:]
            i = 0
            overflow = False
            while i < len(s) and "0" <= s[i] <= "9":
                if not overflow:
                    if f > (_U63 - 1) // 10:
                        overflow = True
                    else:
                        y = f * 10 + (ord(s[i]) - 48)
                        if y > _U63:
                            overflow = True
                        else:
                            f = y
                            scale *= 10
                i += 1
            post = i != 0
            s = s[i:]
        if not pre and not post:
            raise ValueError(invalid)
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise ValueError(f"time: missing unit in duration {_time_quote(orig)}")
        u = s[:i]
        s = s[i:]
        unit = _UNITS.get(u)
        if unit is None:
            raise ValueError(f"time: unknown unit {_time_quote(u)} in duration {_time_quote(orig)}")
        if v > _U63 // unit:
            raise ValueError(invalid)
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > _U63:
                raise ValueError(invalid)
        d += v
        if d > _U63:
            raise ValueError(invalid)
    if neg:
        return -d
    if d > _U63 - 1:
        raise ValueError(invalid)
    return d


def parse_go_duration(s: str) -> float:
    """A Go duration string (``1h30m``, ``1.5h``, ``-10s``, ``300ms``) as seconds.

    Raises :class:`InvalidArgument` with Go's message, e.g. ``time: invalid duration "x"``.
    """
    try:
        return parse_go_duration_ns(s) / 1e9
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def format_go_duration(ns: int) -> str:
    """Go's ``time.Duration.String`` (``1h30m0s``, ``1.5s``, ``1ms``, ``0s``)."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < _S:
        if u < _US:
            body = f"{u}ns"
        elif u < _MS:
            body = _frac(u, 3) + "\u00b5s"
        else:
            body = _frac(u, 6) + "ms"
    else:
        body = _frac(u, 9) + "s"
        u //= _S
        if u >= 60:
            body = body[len(str(u)) :]  # drop the whole seconds, re-added below
            secs = u % 60
            body = f"{secs}" + body
            u //= 60
            body = f"{u % 60}m" + body
            u //= 60
            if u > 0:
                body = f"{u}h" + body
    return ("-" if neg else "") + body


def _frac(v: int, prec: int) -> str:
    whole, frac = divmod(v, 10**prec)
    digits = f"{frac:0{prec}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else f"{whole}"


# ---------------------------------------------------------------------------------------------
# time.Parse for the layouts GetTimestamp uses

_LONG_YEAR = "2006"
_ZERO_MONTH = "01"
_ZERO_DAY = "02"
_HOUR = "15"
_ZERO_MINUTE = "04"
_ZERO_SECOND = "05"
_FRAC9 = ".999999999"
_TZ = "Z07:00"

# Each layout as the chunks Go's nextStdChunk finds in it: (literal prefix, std element).
_LAYOUTS: dict[str, list[tuple[str, str]]] = {}


def _layout(text: str, chunks: list[tuple[str, str]]) -> str:
    _LAYOUTS[text] = chunks
    return text


_DATE = [("", _LONG_YEAR), ("-", _ZERO_MONTH), ("-", _ZERO_DAY)]
_RFC3339_LOCAL = _layout(
    "2006-01-02T15:04:05", [*_DATE, ("T", _HOUR), (":", _ZERO_MINUTE), (":", _ZERO_SECOND)]
)
_RFC3339_NANO_LOCAL = _layout(
    "2006-01-02T15:04:05.999999999",
    [*_DATE, ("T", _HOUR), (":", _ZERO_MINUTE), (":", _ZERO_SECOND), ("", _FRAC9)],
)
_DATE_WITH_ZONE = _layout("2006-01-02Z07:00", [*_DATE, ("", _TZ)])
_DATE_LOCAL = _layout("2006-01-02", list(_DATE))
_RFC3339 = _layout(
    "2006-01-02T15:04:05Z07:00",
    [*_DATE, ("T", _HOUR), (":", _ZERO_MINUTE), (":", _ZERO_SECOND), ("", _TZ)],
)
_RFC3339_NANO = _layout(
    "2006-01-02T15:04:05.999999999Z07:00",
    [*_DATE, ("T", _HOUR), (":", _ZERO_MINUTE), (":", _ZERO_SECOND), ("", _FRAC9), ("", _TZ)],
)
_T15 = _layout("2006-01-02T15", [*_DATE, ("T", _HOUR)])
_T1504 = _layout("2006-01-02T15:04", [*_DATE, ("T", _HOUR), (":", _ZERO_MINUTE)])
_T15Z = _layout("2006-01-02T15Z07:00", [*_DATE, ("T", _HOUR), ("", _TZ)])
_T1504Z = _layout("2006-01-02T15:04Z07:00", [*_DATE, ("T", _HOUR), (":", _ZERO_MINUTE), ("", _TZ)])


class _ParseError(ValueError):
    pass


def _parse_error(layout: str, value: str, layout_elem: str, value_elem: str, message: str) -> _ParseError:
    if message == "":
        return _ParseError(
            f"parsing time {_time_quote(value)} as {_time_quote(layout)}: cannot parse "
            f"{_time_quote(value_elem)} as {_time_quote(layout_elem)}"
        )
    return _ParseError(f"parsing time {_time_quote(value)}{message}")


def _is_digit(s: str, i: int) -> bool:
    return i < len(s) and "0" <= s[i] <= "9"


class _Bad(Exception):
    pass


def _getnum(s: str, fixed: bool) -> tuple[int, str]:
    if not _is_digit(s, 0):
        raise _Bad
    if not _is_digit(s, 1):
        if fixed:
            raise _Bad
        return ord(s[0]) - 48, s[1:]
    return (ord(s[0]) - 48) * 10 + (ord(s[1]) - 48), s[2:]


def _parse_nanoseconds(value: str, nbytes: int) -> int:
    if value[0] not in ".,":
        raise _Bad
    if nbytes > 10:
        value = value[:10]
        nbytes = 10
    digits = value[1:nbytes]
    if not digits or not all("0" <= c <= "9" for c in digits):
        raise _Bad
    return int(digits) * int(10 ** (10 - nbytes))


def _days_in(month: int, year: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _go_parse(layout: str, value: str, default_offset: int) -> tuple[int, int]:
    """Go's ``time.Parse``/``ParseInLocation`` for one of the layouts above: (unix seconds, nanos)."""
    avalue = value
    year = 0
    month = -1
    day = -1
    hour = minute = sec = nsec = 0
    utc = False
    zone_offset: int | None = None
    chunks = _LAYOUTS[layout]
    for index, (prefix, std) in enumerate(chunks):
        # skip the literal prefix
        rest = value
        for ch in prefix:
            if not rest or rest[0] != ch:
                raise _parse_error(layout, avalue, prefix, value, "")
            rest = rest[1:]
        value = rest
        hold = value
        range_err = ""
        try:
            if std == _LONG_YEAR:
                if len(value.encode("utf-8", "surrogatepass")) < 4 or not _is_digit(value, 0):
                    raise _Bad
                p, value = value[:4], value[4:]
                if not all("0" <= c <= "9" for c in p):
                    raise _Bad
                year = int(p)
            elif std == _ZERO_MONTH:
                month, value = _getnum(value, True)
                if month <= 0 or month > 12:
                    range_err = "month"
            elif std == _ZERO_DAY:
                day, value = _getnum(value, True)
            elif std == _HOUR:
                hour, value = _getnum(value, False)
                if hour >= 24:
                    range_err = "hour"
            elif std == _ZERO_MINUTE:
                minute, value = _getnum(value, True)
                if minute >= 60:
                    range_err = "minute"
            elif std == _ZERO_SECOND:
                sec, value = _getnum(value, True)
                if sec >= 60:
                    range_err = "second"
                elif len(value) >= 2 and value[0] in ".," and _is_digit(value, 1):
                    following = chunks[index + 1][1] if index + 1 < len(chunks) else None
                    if following != _FRAC9:
                        n = 2
                        while n < len(value) and _is_digit(value, n):
                            n += 1
                        nsec = _parse_nanoseconds(value, n)
                        value = value[n:]
            elif std == _FRAC9:
                if len(value) >= 2 and value[0] in ".," and "0" <= value[1] <= "9":
                    i = 0
                    while i + 1 < len(value) and "0" <= value[i + 1] <= "9":
                        i += 1
                    nsec = _parse_nanoseconds(value, 1 + i)
                    value = value[1 + i :]
            elif std == _TZ:
                if value[:1] == "Z":
                    value = value[1:]
                    utc = True
                else:
                    if len(value.encode("utf-8", "surrogatepass")) < 6 or len(value) < 6 or value[3] != ":":
                        raise _Bad
                    sign, hh, mm, value = value[0], value[1:3], value[4:6], value[6:]
                    hr, _ = _getnum(hh, True)
                    mi, _ = _getnum(mm, True)
                    if hr > 24:
                        range_err = "time zone offset hour"
                    if mi > 60:
                        range_err = "time zone offset minute"
                    zone_offset = (hr * 60 + mi) * 60
                    if sign == "-":
                        zone_offset = -zone_offset
                    elif sign != "+":
                        raise _Bad
        except _Bad:
            if range_err:
                raise _parse_error(layout, avalue, std, value, ": " + range_err + " out of range") from None
            raise _parse_error(layout, avalue, std, hold, "") from None
        if range_err:
            raise _parse_error(layout, avalue, std, value, ": " + range_err + " out of range")
    if value:
        raise _parse_error(layout, avalue, "", value, ": extra text: " + _time_quote(value))
    if month < 0:
        month = 1
    if day < 0:
        day = 1
    if day < 1 or day > _days_in(month, year):
        raise _parse_error(layout, avalue, "", value, ": day out of range")
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec
    if utc:
        offset = 0
    elif zone_offset is not None:
        offset = zone_offset
    else:
        offset = default_offset
    return seconds - offset, nsec


# ---------------------------------------------------------------------------------------------
# GetTimestamp / ParseTimestamps


def _reference_ns(reference: float | int | None) -> int:
    if reference is None:
        return _time.time_ns()
    if isinstance(reference, int):
        return reference * 1_000_000_000
    return int((Decimal(repr(float(reference))) * 1_000_000_000).to_integral_value(rounding="ROUND_FLOOR"))


def _local_offset(ref_seconds: int) -> int:
    try:
        return _time.localtime(ref_seconds).tm_gmtoff or 0
    except (OverflowError, OSError, ValueError):
        return 0


def _parse_timestamp(value: str) -> tuple[int, int]:
    s, sep, n = value.partition(".")
    sec = parse_int64(s)
    if not sep:
        return sec, 0
    nsec = parse_int64(n)
    nsec = int(float(nsec) * math.pow(10.0, float(9 - len(n))))
    return sec, nsec


def get_timestamp(value: str, reference: float | int | None = None, *, utc_offset: int | None = None) -> str:
    """moby's ``GetTimestamp``: ``value`` as Unix seconds in a string, as dockerd computes it.

    * a Go duration gives ``reference - duration`` in whole seconds (``"1136073540"``);
    * an RFC 3339-like date-time gives ``"seconds.nanoseconds"`` (``"1136214245.000000000"``);
    * Unix seconds come back as they were given.

    ``reference`` is Unix seconds (float, or int), ``None`` for now. A date-time without a zone is
    read in the zone of the reference time: the local zone, or ``utc_offset`` seconds east of UTC.
    Raises :class:`InvalidArgument` with dockerd's message.
    """
    ref_ns = _reference_ns(reference)
    if value != "0":
        try:
            d = parse_go_duration_ns(value)
        except ValueError:
            pass
        else:
            return str((ref_ns - d) // 1_000_000_000)

    parse_in_location = not any(c in value for c in "zZ+") and value.count("-") != 3

    if "." in value:
        layout = _RFC3339_NANO_LOCAL if parse_in_location else _RFC3339_NANO
    elif "T" in value:
        tcolons = value.count(":")
        if not parse_in_location and not any(c in value for c in "zZ") and tcolons > 0:
            tcolons -= 1
        if parse_in_location:
            layout = {0: _T15, 1: _T1504}.get(tcolons, _RFC3339_LOCAL)
        else:
            layout = {0: _T15Z, 1: _T1504Z}.get(tcolons, _RFC3339)
    elif parse_in_location:
        layout = _DATE_LOCAL
    else:
        layout = _DATE_WITH_ZONE

    if parse_in_location:
        offset = utc_offset if utc_offset is not None else _local_offset(ref_ns // 1_000_000_000)
    else:
        offset = 0
    try:
        seconds, nanos = _go_parse(layout, value, offset)
    except _ParseError as exc:
        if "-" in value:
            raise InvalidArgument(str(exc)) from None
        try:
            _parse_timestamp(value)
        except ValueError:
            raise InvalidArgument(f"failed to parse value as time or duration: {go_quote(value)}") from None
        return value
    return f"{seconds}.{nanos:09d}"


def parse_timestamps(value: str, default_seconds: int = 0) -> tuple[int, int]:
    """moby's ``ParseTimestamps``: ``"seconds[.fraction]"`` as (seconds, nanoseconds).

    ``""`` gives ``(default_seconds, 0)``. A fraction of other than nine digits is scaled to
    nanoseconds the way Go does it (through a float, truncating). Raises :class:`InvalidArgument`
    with Go's ``strconv.ParseInt`` message.
    """
    if value == "":
        return default_seconds, 0
    try:
        return _parse_timestamp(value)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def parse_timestamp(value: str, reference: float | int | None = None, *, utc_offset: int | None = None) -> float:
    """A filter timestamp (``until=10m``, ``until=2024-01-02T03:04:05Z``, ``until=1700000000``) as
    Unix seconds: ``GetTimestamp`` then ``ParseTimestamps``, as dockerd's prune filters do."""
    ts = get_timestamp(value, reference, utc_offset=utc_offset)
    seconds, nanos = parse_timestamps(ts, 0)
    return seconds + nanos / 1e9


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``: how dockerd words an age ("Up 5 minutes", "Exited (0) 2 hours ago")."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"
