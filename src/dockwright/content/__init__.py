"""Content-addressed blob storage. Knows no images, names or SQLite."""

from __future__ import annotations

from .store import *  # noqa: F401,F403
from .store import __all__ as _all

__all__ = list(_all)
