"""The event bus behind ``GET /events``: a bounded history for since/until plus live subscribers."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["Event", "EventBus"]

HISTORY = 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One event: type, action, actor and its attributes, time."""

    type: str            # "image", "builder", "container", "daemon"
    action: str          # "import", "tag", "untag", "delete", "prune", "pull", ...
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0
    scope: str = "local"

    def to_json(self, legacy: bool = True) -> dict[str, object]:
        """The event as ``GET /events`` sends it (``legacy`` adds status/id/from)."""
        d: dict[str, object] = {}
        if legacy and self.type in ("container", "image"):
            d["status"] = self.action
            d["id"] = self.actor_id
            if self.type == "container" and self.attributes.get("image"):
                d["from"] = self.attributes["image"]
        d["Type"] = self.type
        d["Action"] = self.action
        d["Actor"] = {"ID": self.actor_id, "Attributes": dict(self.attributes)}
        d["scope"] = self.scope
        d["time"] = self.time_nano // 1_000_000_000
        d["timeNano"] = self.time_nano
        return d


class EventBus:
    """The events of this daemon: a bounded history and the live subscribers."""

    def __init__(self) -> None:
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._subs: set[asyncio.Queue[Event]] = set()

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
        """Record an event and hand it to every subscriber."""
        ev = Event(type_, action, actor_id, dict(attributes or {}), time.time_ns())
        self._history.append(ev)
        for q in list(self._subs):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                pass
        return ev

    @property
    def listeners(self) -> int:
        """How many subscribers there are."""
        return len(self._subs)

    def history(self, since_ns: int | None, until_ns: int | None) -> list[Event]:
        """The recorded events, oldest first."""
        return [e for e in self._history
                if (since_ns is None or e.time_nano >= since_ns) and (until_ns is None or e.time_nano <= until_ns)]

    async def subscribe(self, since_ns: int | None = None, until_ns: int | None = None) -> AsyncIterator[Event]:
        """Past events in [since, until], then live ones until ``until`` (forever without it)."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=10000)
        self._subs.add(q)
        try:
            last = 0
            if since_ns is not None:
                for e in self.history(since_ns, until_ns):
                    last = e.time_nano
                    yield e
            now = time.time_ns()
            if until_ns is not None and until_ns <= now:
                return
            while True:
                timeout = None if until_ns is None else max(0.0, (until_ns - time.time_ns()) / 1e9)
                try:
                    e = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if e.time_nano <= last:
                    continue
                if until_ns is not None and e.time_nano > until_ns:
                    return
                yield e
        finally:
            self._subs.discard(q)
