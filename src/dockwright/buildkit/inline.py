"""Inline cache (``BUILDKIT_INLINE_CACHE=1``, ``--cache-from``): the cache keys of an image's steps carried in its
config under ``moby.buildkit.cache.v0``, written at export and read back into the build cache from an image
(local or pulled), so that a build elsewhere hits the cache on the image's layers."""

from __future__ import annotations

import base64
import json
from typing import Any

from .state import State

__all__ = ["INLINE_CACHE_KEY", "inline_cache", "read_inline_cache"]

INLINE_CACHE_KEY = "moby.buildkit.cache.v0"


def inline_cache(state: State) -> str:
    """The steps' cache keys as the image carries them (``BUILDKIT_INLINE_CACHE=1``): base64 of a JSON list of
    ``{"key", "layer"}`` (the index of the step's layer in the image, -1 for none). BuildKit's own keys are
    digests of its LLB, which this engine does not make: the content is this engine's, under BuildKit's name."""
    return base64.b64encode(json.dumps([{"key": k, "layer": i} for k, i in state.steps],
                                       separators=(",", ":")).encode()).decode()


def read_inline_cache(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The cache keys an image's config carries (none for an image without, or one BuildKit itself made)."""
    raw = config.get(INLINE_CACHE_KEY)
    if not isinstance(raw, str):
        return []
    try:
        entries = json.loads(base64.b64decode(raw))
    except ValueError:
        return []
    out: list[tuple[str, int]] = []
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("layer"), int):
            out.append((e["key"], e["layer"]))
    return out


