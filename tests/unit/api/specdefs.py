"""The property names of a definition in the Engine API specs (/work/shared/spec), read without a YAML library.

``properties(version, name)``: the keys of ``definitions.<name>`` in spec order — its own ``properties``, and for an
``allOf`` definition those of every ``$ref`` it includes and of its inline objects. Only what the unit tests of the
API renderers need (block-style YAML, two-space indentation, as the specs are written)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parents[4] / "shared" / "spec"
FILES = {"1.41": "docker-engine-api-v1.41.yaml", "1.44": "docker-engine-api-v1.44.yaml",
         "1.51": "docker-engine-api-v1.51.yaml"}


@functools.cache
def _lines(version: str) -> tuple[str, ...]:
    return tuple((SPEC_DIR / FILES[version]).read_text().splitlines())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def properties(version: str, name: str) -> list[str]:
    """The property names of ``definitions.<name>`` in the spec of API ``version`` ("1.41", "1.44", "1.51")."""
    lines = _lines(version)
    start = lines.index(f"  {name}:")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^ {0,2}\S", lines[i])), len(lines))
    body = lines[start + 1:end]
    out: list[str] = []
    i = 0
    while i < len(body):
        line = body[i]
        ref = re.match(r'^ {4,6}- \$ref: "#/definitions/(\w+)"', line)
        if ref and _indent(line) <= 6:
            out += [p for p in properties(version, ref.group(1)) if p not in out]
        if line.strip() == "properties:" and _indent(line) in (4, 8):
            depth = _indent(line)
            i += 1
            while i < len(body) and (not body[i].strip() or body[i].lstrip().startswith("#")
                                     or _indent(body[i]) > depth):
                m = re.match(rf"^ {{{depth + 2}}}([A-Za-z0-9_.]+):", body[i])
                if m and m.group(1) not in out:
                    out.append(m.group(1))
                i += 1
            continue
        i += 1
    return out
