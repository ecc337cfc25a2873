"""engine/prune.py: one prune of a kind at a time, and the ``until`` filter as dockerd reads it."""

from __future__ import annotations

import time

import pytest

from dockwright.engine.prune import PruneLock, prune_until
from dockwright.errors import Conflict, InvalidArgument
from dockwright.filters import Filters


def test_a_second_prune_meanwhile_is_a_conflict_and_the_lock_frees_after_an_error() -> None:
    lock = PruneLock()
    with lock.hold():
        with pytest.raises(Conflict, match="^a prune operation is already running$"):
            with lock.hold():
                pass
    with pytest.raises(ValueError):
        with lock.hold():
            raise ValueError("the prune failed")
    assert not lock.running
    with lock.hold():
        assert lock.running


def test_until_as_a_timestamp_or_a_duration_and_only_once() -> None:
    assert prune_until(Filters()) is None
    assert prune_until(Filters.parse('{"until": ["1700000000"]}')) == 1_700_000_000
    ago = prune_until(Filters.parse('{"until": ["10m"]}'))
    assert ago is not None and abs(time.time() - 600 - ago) < 5
    with pytest.raises(InvalidArgument, match="^more than one until filter specified$"):
        prune_until(Filters.parse('{"until": ["1h", "2h"]}'))
