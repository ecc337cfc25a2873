"""Progress events of streaming operations. The engine yields these; ``api/streams`` renders dockerd's lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Union

__all__ = ["Status", "Progress", "StreamText", "Aux", "ProgressEvent", "drain"]


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
