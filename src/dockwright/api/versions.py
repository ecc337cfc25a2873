"""API versions: parsing, comparison and the supported range."""

from __future__ import annotations

__all__ = ["Version", "parse_version", "DEFAULT", "MINIMUM"]

Version = tuple[int, ...]


def parse_version(s: str) -> Version:
    out = []
    for part in s.split("."):
        try:
            out.append(int(part))
        except ValueError:
            out.append(0)
    while len(out) < 2:
        out.append(0)
    return tuple(out)


DEFAULT: Version = (1, 51)
MINIMUM: Version = (1, 24)
