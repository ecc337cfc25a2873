"""API versions: parsing, comparison and the supported range."""

from __future__ import annotations

__all__ = ["Version", "parse_version", "DEFAULT", "MINIMUM"]

Version = tuple[int, ...]


def parse_version(s: str) -> Version:
    """``"1.41"`` → ``(1, 41)``: a part that is not a number counts as 0, and a missing minor as 0."""
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
