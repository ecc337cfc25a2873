"""The in-process API: ``Engine`` wires the stores and exposes one service per concept."""

from __future__ import annotations

from .config import EngineConfig
from .engine import Engine

__all__ = ["Engine", "EngineConfig"]
