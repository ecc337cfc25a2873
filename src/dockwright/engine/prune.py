"""What every prune shares (containers, images, volumes): one prune of a kind at a time, and the ``until``
filter."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from ..errors import Conflict, InvalidArgument
from ..filters import Filters
from ..timestamps import parse_timestamp

__all__ = ["PruneLock", "prune_until"]


class PruneLock:
    """One prune of a kind at a time: another one meanwhile is dockerd's ``a prune operation is already running``
    (409)."""

    def __init__(self) -> None:
        self.running = False

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the prune's duration; :class:`Conflict` when a prune already holds it."""
        if self.running:
            raise Conflict("a prune operation is already running")
        self.running = True
        try:
            yield
        finally:
            self.running = False


def prune_until(f: Filters) -> float | None:
    """The ``until`` filter of a prune as Unix time (a timestamp or a duration before now), None without one;
    more than one is dockerd's ``more than one until filter specified``."""
    if not f.contains("until"):
        return None
    values = f.get("until")
    if len(values) > 1:
        raise InvalidArgument("more than one until filter specified")
    return parse_timestamp(values[0], time.time())
