"""Image metadata in SQLite (WAL): images, references, layers and the edges GC walks."""

from __future__ import annotations

from .db import *  # noqa: F401,F403
from .db import __all__ as _all

__all__ = list(_all)
