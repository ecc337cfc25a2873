"""Progress events of streaming operations. The engine yields these; ``api/streams`` renders dockerd's lines."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Union

__all__ = ["Status", "Progress", "StreamText", "Aux", "ProgressEvent", "drain", "run_with_events"]


@dataclass(frozen=True, slots=True)
class Status:
    """A status line, optionally for one item (a layer short ID, a tag)."""
    status: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress update: ``current`` of ``total`` bytes (total 0/None when unknown)."""
    status: str
    id: str | None
    current: int
    total: int | None = None
    units: str | None = None


@dataclass(frozen=True, slots=True)
class StreamText:
    """Free text (build output, ``Loaded image: …``)."""
    text: str


@dataclass(frozen=True, slots=True)
class Aux:
    """Auxiliary JSON data (push result, build ID)."""
    data: Any
    id: str | None = None


ProgressEvent = Union[Status, Progress, StreamText, Aux]


async def drain(events: AsyncIterator[ProgressEvent]) -> list[ProgressEvent]:
    """Run a streaming operation to its end and return every event (for library users)."""
    return [e async for e in events]


Emit = Callable[[ProgressEvent], None]


async def run_with_events(work: Callable[[Emit], Awaitable[Any]]) -> AsyncIterator[ProgressEvent]:
    """Run ``work(emit)`` as a task and yield what it emits as it happens. Its error is raised once the events
    it emitted before have been yielded; leaving the iteration early (or a cancelled consumer) cancels it."""
    queue: asyncio.Queue[ProgressEvent | None] = asyncio.Queue()

    async def run() -> None:
        try:
            await work(queue.put_nowait)
        finally:
            queue.put_nowait(None)

    task = asyncio.ensure_future(run())
    try:
        while (ev := await queue.get()) is not None:
            yield ev
        await task
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - the consumer's own exit is what propagates
                pass
