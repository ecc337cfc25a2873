"""Container resource and host-setting checks, as dockerd makes them when it creates a container.

This module owns :func:`verify_resources` (memory, swap, CPU period/quota, cpusets, shm size: moby's
``verifyPlatformContainerResources``/``verifyPlatformContainerSettings``, with its messages) and
:func:`verify_extra_hosts` (``opts.ValidateExtraHost``). Both the containers service (``POST
/containers/create``) and the builder (a RUN step's container) call them, so the two refuse the same values in
the same words.
"""

from __future__ import annotations

import ipaddress
import os
import re

from ..errors import InvalidArgument
from ..timestamps import go_quote

__all__ = ["verify_resources", "verify_extra_hosts"]

_LINUX_MIN_MEMORY = 6 * 1024 * 1024  # linuxMinMemory
_GO_INT = re.compile(r"[+-]?[0-9]+\Z")


def _go_atoi(s: str) -> int:
    if not _GO_INT.match(s):
        raise ValueError(s)
    v = int(s)
    if not -(1 << 63) <= v < (1 << 63):
        raise ValueError(s)
    return v


def _parse_uint_list(val: str, maximum: int = 0) -> list[tuple[int, int]]:
    """``parsers.ParseUintList(Maximum)``: ``0,3-4,7`` as ranges (not expanded: a range may be huge)."""
    if val == "":
        return []
    invalid = ValueError(f"invalid format: {val}")
    out = []
    for r in val.split(","):
        try:
            if "-" not in r:
                lo = hi = _go_atoi(r)
            else:
                a, b = r.split("-", 1)
                lo, hi = _go_atoi(a), _go_atoi(b)
                if hi < lo:
                    raise invalid
        except ValueError:
            raise invalid from None
        if maximum and hi > maximum:
            raise ValueError(f"value of out range, maximum is {maximum}")
        out.append((lo, hi))
    return out


def _cpuset_available(provided: str, available: str) -> bool:
    """``isCpusetListAvailable``: every CPU (memory node) of ``provided`` is in ``available``."""
    avail = _parse_uint_list(available)
    maximum = max([8192, *(hi for _, hi in avail)])
    for lo, hi in _parse_uint_list(provided, maximum):
        # the range must be covered by the available ranges
        pos = lo
        while pos <= hi:
            nxt = next((h for a, h in avail if a <= pos <= h), None)
            if nxt is None:
                return False
            pos = nxt + 1
    return True


def _read_first(*paths: str) -> str | None:
    for p in paths:
        try:
            with open(p) as f:
                return f.read().strip()
        except OSError:
            continue
    return None


def _ranges(values: list[int]) -> str:
    out: list[str] = []
    for v in sorted(set(values)):
        if out and "-" in out[-1] and int(out[-1].split("-")[1]) == v - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        elif out and "-" not in out[-1] and int(out[-1]) == v - 1:
            out[-1] = f"{out[-1]}-{v}"
        else:
            out.append(str(v))
    return ",".join(out)


def _host_cpus() -> str:
    """The CPUs containers may use (sysinfo's ``Cpus``: the cpuset cgroup's)."""
    found = _read_first("/sys/fs/cgroup/cpuset.cpus.effective", "/sys/fs/cgroup/cpuset/cpuset.cpus")
    return found if found else _ranges(sorted(os.sched_getaffinity(0)))


def _host_mems() -> str:
    found = _read_first("/sys/fs/cgroup/cpuset.mems.effective", "/sys/fs/cgroup/cpuset/cpuset.mems",
                        "/sys/devices/system/node/online")
    return found if found else "0"


def verify_resources(*, memory: int = 0, memswap: int = 0, cpuperiod: int = 0, cpuquota: int = 0,
                     cpusetcpus: str = "", cpusetmems: str = "", shmsize: int = 0) -> None:
    """The checks dockerd makes on a container's resources when it creates the container
    (``verifyPlatformContainerResources``, ``verifyPlatformContainerSettings``), with its messages: for
    ``POST /containers/create``, and for a build's RUN step (only there, as dockerd: a build without a RUN step,
    or whose RUN steps are all cached, never fails on them)."""
    swap = memswap
    if memory != 0 and memory < _LINUX_MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory == 0 and swap > 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if cpuperiod != 0 and not 1000 <= cpuperiod <= 1000000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if 0 < cpuquota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    for value, what, host, word in ((cpusetcpus, "cpus", _host_cpus, "CPUs"),
                                    (cpusetmems, "mems", _host_mems, "memory nodes")):
        if not value:
            continue
        available = host()
        try:
            ok = _cpuset_available(value, available)
        except ValueError as exc:
            raise InvalidArgument(f"Invalid value {value} for cpuset {what}: {exc}") from None
        if not ok:
            raise InvalidArgument(f"Requested {word} are not available - requested {value}, available: {available}")
    if shmsize < 0:
        raise InvalidArgument("SHM size can not be less than 0")


def verify_extra_hosts(hosts: list[str]) -> None:
    """``opts.ValidateExtraHost`` on each ``host:ip`` (dockerd's ``validateHostConfig``)."""
    for val in hosts:
        name, sep, ip = val.partition(":")
        if not sep or not name:
            raise InvalidArgument(f"bad format for add-host: {go_quote(val)}")
        if ip != "host-gateway":
            try:
                ipaddress.ip_address(ip.strip())
            except ValueError:
                raise InvalidArgument(f"invalid IP address in add-host: {go_quote(ip)}") from None
