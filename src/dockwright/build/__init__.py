"""The classic builder: Dockerfile instructions applied to image configs (``commit``/``import`` changes)."""

from __future__ import annotations

from .changes import VALID_CHANGE_COMMANDS, apply_changes

__all__ = ["VALID_CHANGE_COMMANDS", "apply_changes"]
