"""Progress events of streaming operations (pull, push, import, load, build). The engine yields these, or hands
them to a library caller's callback; ``api/streams`` renders dockerd's lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Status", "Progress", "StreamText", "Aux", "ProgressEvent", "ProgressCallback", "Emit", "drain",
           "run_with_events", "begin", "detail", "update_every"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Status:
    """A status line, optionally for one item (a layer short ID, a tag)."""
    status: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress update: ``current`` of ``total`` bytes (total 0/None when unknown). ``bar``: the JSON line
    carries the drawn bar (``progress``); an import's lines do not."""
    status: str
    id: str | None
    current: int
    total: int | None = None
    units: str | None = None
    bar: bool = True


@dataclass(frozen=True, slots=True)
class StreamText:
    """Free text (build output, ``Loaded image: …``)."""
    text: str


@dataclass(frozen=True, slots=True)
class Aux:
    """Auxiliary JSON data (push result, build ID)."""
    data: Any
    id: str | None = None


ProgressEvent = Status | Progress | StreamText | Aux


async def drain(events: AsyncIterator[ProgressEvent]) -> list[ProgressEvent]:
    """Run a streaming operation to its end and return every event (for library users)."""
    return [e async for e in events]


Emit = Callable[[ProgressEvent], None]
ProgressCallback = Emit  # what a library caller passes as ``progress=``: called with each event, in order


def detail(status: str, id_: str) -> Progress:
    """A per-item status line with an empty progressDetail, as dockerd's progress output writes it."""
    return Progress(status, id_, 0)


def update_every(size: int) -> int:
    """How many bytes between two progress updates of a transfer of ``size`` bytes (dockerd's: about 1 %)."""
    every = 512 * 1024
    if size > 0:
        every = min(every, max(1, size // 100))
    return every


async def begin(events: AsyncIterator[T]) -> AsyncIterator[T]:
    """Run a stream to its first event now, so that an error before it is raised to the caller (an HTTP status
    rather than a line of the stream), and return the whole stream."""
    try:
        first = await events.__anext__()
    except StopAsyncIteration:
        return _empty()
    return _chain(first, events)


async def _empty() -> AsyncIterator[Any]:
    return
    yield


async def _chain(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for ev in rest:
        yield ev


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
