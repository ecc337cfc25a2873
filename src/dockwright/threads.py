"""Blocking work in a daemon thread of its own, awaited from the event loop (not the shared executor, whose threads
are joined at exit and may be held for long)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["thread_future"]

T = TypeVar("T")


def thread_future(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """A future of the running loop settled with ``fn()``'s result or exception, ``fn`` run in a new daemon thread
    called ``name``. Cancelling the future does not stop ``fn``; a loop closed meanwhile is not told."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def run() -> None:
        result: Any = None
        exc: BaseException | None = None
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            exc = e
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:
            pass  # the loop is closed: the daemon stopped meanwhile

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut
