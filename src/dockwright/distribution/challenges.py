"""``WWW-Authenticate`` challenges: docker/distribution's ``challenge.parseValueAndParams``, byte for byte
(:func:`parse_www_authenticate` gives a :class:`Challenge` per header line).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Challenge", "parse_www_authenticate"]

_SEPARATORS = set(" \t\"(),/:;<=>?@[]\\{}")


def _is_token_char(c: str) -> bool:
    o = ord(c)
    return o < 128 and not (o <= 31 or o == 127) and c not in _SEPARATORS


def _is_space(c: str) -> bool:
    return c in " \t\r\n"


def _skip_space(s: str) -> str:
    i = 0
    while i < len(s) and _is_space(s[i]):
        i += 1
    return s[i:]


def _expect_token(s: str) -> tuple[str, str]:
    i = 0
    while i < len(s) and _is_token_char(s[i]):
        i += 1
    return s[:i], s[i:]


def _expect_token_or_quoted(s: str) -> tuple[str, str]:
    if not s.startswith('"'):
        return _expect_token(s)
    s = s[1:]
    i = 0
    while i < len(s):
        c = s[i]
        if c == '"':
            return s[:i], s[i + 1:]
        if c == "\\":
            out = list(s[:i])
            escape = True
            i += 1
            while i < len(s):
                b = s[i]
                if escape:
                    escape = False
                    out.append(b)
                elif b == "\\":
                    escape = True
                elif b == '"':
                    return "".join(out), s[i + 1:]
                else:
                    out.append(b)
                i += 1
            return "", ""
        i += 1
    return "", ""


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: a lower-case scheme and its (lower-case keyed) parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def _parse_value_and_params(header: str) -> tuple[str, dict[str, str]]:
    params: dict[str, str] = {}
    value, s = _expect_token(header)
    if not value:
        return "", params
    value = value.lower()
    s = "," + _skip_space(s)
    while s.startswith(","):
        pkey, s = _expect_token(_skip_space(s[1:]))
        if not pkey:
            return value, params
        if not s.startswith("="):
            return value, params
        pvalue, s = _expect_token_or_quoted(s[1:])
        if not pvalue:
            return value, params
        params[pkey.lower()] = pvalue
        s = _skip_space(s)
    return value, params


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Each ``WWW-Authenticate`` header value → a Challenge (one per header line, as distribution parses them)."""
    out: list[Challenge] = []
    for h in values:
        scheme, params = _parse_value_and_params(h)
        if scheme:
            out.append(Challenge(scheme, params))
    return out
