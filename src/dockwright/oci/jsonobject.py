"""Reading a JSON document that must be an object: the one check every manifest, config and token reader makes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["json_object"]


def json_object(raw: bytes | str, error: Callable[[str], Exception], prefix: str) -> dict[str, Any]:
    """``raw`` decoded as a JSON object; else ``error(f"{prefix}: {why}")`` (why: the decoder's words, or
    ``not a JSON object``)."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise error(f"{prefix}: {exc}") from exc
    if not isinstance(doc, dict):
        raise error(f"{prefix}: not a JSON object")
    return doc
