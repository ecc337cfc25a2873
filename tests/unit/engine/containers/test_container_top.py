"""dockerd's parsing of ``ps`` output for ``docker top``."""

from __future__ import annotations

import pytest

from dockwright.engine.containers.top import parse_ps_output
from dockwright.errors import SystemError_

PS = """UID PID PPID C STIME TTY TIME CMD
root 10 1 0 10:00 ? 00:00:00 sleep 300
root - - 0 10:00 ? 00:00:00 thread of 10
root 11 1 0 10:00 ? 00:00:00 other process
"""


def test_only_the_container_pids_and_their_threads() -> None:
    out = parse_ps_output(PS, [10])
    assert out["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert out["Processes"] == [["root", "10", "1", "0", "10:00", "?", "00:00:00", "sleep 300"],
                                ["root", "-", "-", "0", "10:00", "?", "00:00:00", "thread of 10"]]


def test_errors() -> None:
    with pytest.raises(SystemError_, match="Couldn't find PID field"):
        parse_ps_output("UID CMD\n", [1])
    with pytest.raises(SystemError_, match="Unexpected pid 'x'"):
        parse_ps_output("PID CMD\nx sh\n", [1])
