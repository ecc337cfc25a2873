"""Helpers of the dockerfile tests: apply ``changes`` (commit/import) to a config, or get the error they raise."""

from __future__ import annotations

from typing import Any

import pytest

from dockwright.dockerfile import apply_changes
from dockwright.errors import InvalidArgument


def apply(changes: list[str], config: dict[str, Any] | None = None, os: str = "linux") -> dict[str, Any]:
    """``changes`` applied to ``config`` (an empty one by default)."""
    return apply_changes(config if config is not None else {}, changes, os)


def error(changes: list[str], config: dict[str, Any] | None = None, os: str = "linux") -> str:
    """The message of the InvalidArgument that ``changes`` raise."""
    with pytest.raises(InvalidArgument) as exc:
        apply(changes, config, os)
    return str(exc.value)
