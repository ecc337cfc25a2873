"""The Docker Engine API over HTTP (aiohttp): routing, versions, parameters, response shapes. No logic."""

from __future__ import annotations

from .app import make_app

__all__ = ["make_app"]
