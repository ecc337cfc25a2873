"""thread_future: a result or an exception from a daemon thread of its own."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dockwright.threads import thread_future


def test_result_and_thread_name() -> None:
    async def main() -> str:
        return await thread_future(lambda: threading.current_thread().name, "probe")

    assert asyncio.run(main()) == "probe"


def test_exception_handed_over() -> None:
    def boom() -> None:
        raise KeyError("x")

    async def main() -> None:
        await thread_future(boom, "probe")

    with pytest.raises(KeyError):
        asyncio.run(main())
