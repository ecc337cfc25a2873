"""Go's ``path.Match`` (``filepath.Match`` on Linux), as moby's ``patternmatcher`` and COPY's source patterns
use it: :func:`go_path_match`, :func:`contains_wildcards`."""

from __future__ import annotations

from .paths import go_clean as _go_clean

__all__ = ["contains_wildcards", "go_path_match", "go_dir", "go_match", "BadPattern"]

# ==================================================================================================
# Go helpers


def go_dir(p: str) -> str:
    """Go's ``filepath.Dir``."""
    i = p.rfind("/")
    return _go_clean(p[: i + 1])


class BadPattern(Exception):
    """A malformed pattern (Go's ``filepath.ErrBadPattern``)."""


def _get_esc(chunk: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPattern
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern
    r, rest = chunk[0], chunk[1:]
    if not rest:
        raise BadPattern
    return r, rest


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern and pattern[0] == "*":
        pattern = pattern[1:]
        star = True
    inrange = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    """Go's ``filepath.matchChunk``; raises :class:`BadPattern`."""
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = False
            if chunk and chunk[0] == "^":
                negated = True
                chunk = chunk[1:]
            match = False
            nrange = 0
            while True:
                if chunk and chunk[0] == "]" and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if not failed and lo <= r <= hi:
                    match = True
                nrange += 1
            if match == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPattern
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` on Unix; raises :class:`BadPattern` for a malformed pattern."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        t, ok = _match_chunk(chunk, name)
        if ok and (not t or pattern):
            name = t
            continue
        if star:
            found = False
            i = 0
            while i < len(name) and name[i] != "/":
                t, ok = _match_chunk(chunk, name[i + 1 :])
                if ok:
                    if not pattern and t:
                        i += 1
                        continue
                    name = t
                    found = True
                    break
                i += 1
            if found:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return name == ""


def go_path_match(pattern: str, name: str) -> bool:
    """``filepath.Match(pattern, name)`` with errors ignored (a malformed pattern matches nothing)."""
    try:
        return go_match(pattern, name)
    except BadPattern:
        return False


def contains_wildcards(name: str) -> bool:
    """moby's ``containsWildcards``: an unescaped ``*``, ``?`` or ``[``."""
    i = 0
    while i < len(name):
        c = name[i]
        if c == "\\":
            i += 1
        elif c in "*?[":
            return True
        i += 1
    return False
