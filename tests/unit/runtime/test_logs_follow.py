"""runtime.logs: a follow that has to wait for the log file to appear."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import IO

import pytest

from dockwright.runtime import STDOUT, read_json_log
from dockwright.runtime import logs as logs_module
from dockwright.runtime.shim import encode_log_line


def test_follow_by_name_reads_a_log_that_appeared_while_it_looked(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop is looked at before each attempt to open the file, as before each read: when the file appears,
    is written and the stop is set between a failed attempt and the look at the stop, the next attempt opens it
    and the lines are read (the old order looked at the stop after the attempt and ended with nothing)."""
    log = tmp_path / "c-json.log"
    real_open = logs_module._open  # noqa: SLF001
    attempts: list[bool] = []

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def racing_open(path: Path) -> IO[bytes] | None:
            attempts.append(path.exists())
            if len(attempts) == 1:  # the file is not there yet; meanwhile it appears, is written, the run ends
                assert real_open(path) is None
                log.write_bytes(encode_log_line(STDOUT, b"hi\n", time.time_ns()))
                loop.call_soon_threadsafe(stop.set)  # before this attempt's result reaches the reader
                return None
            return real_open(path)

        monkeypatch.setattr(logs_module, "_open", racing_open)
        got = [line async for _, line, _ in read_json_log(log, follow=True, stop=stop, poll_interval=0.01)]
        return got

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [b"hi\n"]
    assert attempts == [False, True]


def test_follow_by_name_of_a_log_that_never_comes_ends_with_the_stop(tmp_path: Path) -> None:
    async def scenario() -> list[bytes]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, stop.set)
        return [line async for _, line, _ in read_json_log(tmp_path / "none-json.log", follow=True, stop=stop,
                                                             poll_interval=0.01)]

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == []
