"""``docker top``: a container's processes (its cgroup's PIDs) and dockerd's parsing of the host's ``ps``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import SystemError_

__all__ = ["cgroup_pids", "parse_ps_output"]

def cgroup_pids(pid: int) -> list[int] | None:
    """The PIDs in the cgroup of process ``pid``: its ``pids`` (or another v1) controller's ``cgroup.procs``, or
    the unified hierarchy's; None when none can be read."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path("/sys/fs/cgroup")
    candidates: list[Path] = []
    v1: dict[str, str] = {}
    unified = ""
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            unified = parts[2]
            continue
        for ctrl in parts[1].split(","):
            v1[ctrl] = parts[2]
        v1[parts[1]] = parts[2]
    for ctrl in ("pids", "memory", "cpu,cpuacct", "cpu", "freezer", "devices"):
        if ctrl in v1:
            candidates.append(root / ctrl / v1[ctrl].lstrip("/"))
    if unified:
        candidates += [root / unified.lstrip("/"), root / "unified" / unified.lstrip("/")]
    for d in candidates:
        try:
            text = (d / "cgroup.procs").read_text()
        except OSError:
            continue
        pids = [int(x) for x in text.split()]
        if pid in pids:
            return pids
    return None


def parse_ps_output(output: str, pids: list[int]) -> dict[str, Any]:
    """dockerd's parsePSOutput: titles from the first line; the lines of the container's PIDs (and the thread
    lines, PID ``-``, that follow one), the last column taking the rest of the line."""
    lines = output.split("\n")
    titles = _fields(lines[0])
    if "PID" not in titles:
        raise SystemError_("Couldn't find PID field in ps output")
    idx = titles.index("PID")
    wanted = set(pids)
    processes: list[list[str]] = []
    contained = False
    for line in lines[1:]:
        if not line:
            continue
        fields = _fields(line)
        if len(fields) <= idx:
            continue
        if fields[idx] == "-":
            if contained:
                processes.append(_process(fields, len(titles)))
            continue
        try:
            p = int(fields[idx])
        except ValueError:
            raise SystemError_(f"Unexpected pid '{fields[idx]}': strconv.Atoi: parsing \"{fields[idx]}\": "
                               f"invalid syntax") from None
        contained = p in wanted
        if contained:
            processes.append(_process(fields, len(titles)))
    return {"Processes": processes, "Titles": titles}


def _fields(line: str) -> list[str]:
    return [f for f in re.split(r"[\t\n\f\r ]+", line) if f]


def _process(fields: list[str], n: int) -> list[str]:
    return fields[:n - 1] + [" ".join(fields[n - 1:])]
