"""BuildKit's cache records in the metadata database: what a step made (a layer, or nothing), keyed by the step's
content-based cache key, and the cache mounts' directories; with their sizes, use counts and times for
``system df`` and ``build prune``. The layers these records hold are roots of the garbage collector."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .db import LayerRecord, MetadataDB

__all__ = ["BKCacheRecord", "BKCacheStore", "SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS bk_cache (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    parent TEXT NOT NULL DEFAULT '',
    layer_digest TEXT,
    diff_id TEXT,
    media_type TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    diff_size INTEGER NOT NULL DEFAULT 0,
    tar_size INTEGER NOT NULL DEFAULT 0,
    chain_id TEXT,
    shared INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    usage_count INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS bk_cache_layer ON bk_cache(layer_digest);
"""


@dataclass(frozen=True)
class BKCacheRecord:
    """One record: a step's result (``layer`` None: the step changed nothing) or a cache mount (``kind``
    ``exec.cachemount``, ``key`` its directory's name)."""

    key: str
    kind: str
    description: str
    parent: str
    layer: LayerRecord | None
    chain_id: str
    size: int
    shared: bool
    created: float
    last_used: float
    usage_count: int


_COLUMNS = ("key, kind, description, parent, layer_digest, diff_id, media_type, size, diff_size, tar_size, chain_id, "
            "shared, created, last_used, usage_count")


def _record(row: tuple[Any, ...]) -> BKCacheRecord:
    (key, kind, desc, parent, digest, diff_id, media_type, size, diff_size, tar_size, chain_id, shared, created,
     last_used, count) = row
    layer = LayerRecord(digest, diff_id, media_type, size, diff_size, tar_size) if digest else None
    return BKCacheRecord(key, kind, desc, parent, layer, chain_id or "", diff_size if digest else size, bool(shared),
                         created, last_used, count)


class BKCacheStore:
    """The ``bk_cache`` table (made if missing when the store is opened)."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db
        db.executescript(SCHEMA)

    def get(self, key: str, *, use: bool = True) -> BKCacheRecord | None:
        """The record of ``key``; with ``use`` a hit counts as a use (``last_used``, ``usage_count``)."""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM bk_cache WHERE key=?", (key,))
        if not rows:
            return None
        if use:
            self.touch(key)
        return _record(rows[0])

    def put(self, key: str, kind: str, description: str, layer: LayerRecord | None, *, parent: str = "",
            chain_id: str = "", size: int = 0) -> float:
        """Record (or replace) what the step ``key`` made; returns the record's creation time."""
        now = time.time()
        with self.db.tx() as c:
            c.execute(f"INSERT OR REPLACE INTO bk_cache({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?,1)",
                      (key, kind, description[:400], parent, layer.digest if layer else None,
                       layer.diff_id if layer else None, layer.media_type if layer else None,
                       layer.size if layer else size, layer.diff_size if layer else 0, layer.tar_size if layer else 0,
                       chain_id or None, now, now))
        return now

    def touch(self, key: str) -> None:
        """Count a use of ``key``."""
        with self.db.tx() as c:
            c.execute("UPDATE bk_cache SET last_used=?, usage_count=usage_count+1 WHERE key=?", (time.time(), key))

    def set_size(self, key: str, size: int) -> None:
        """Record the size of a cache mount's directory."""
        with self.db.tx() as c:
            c.execute("UPDATE bk_cache SET size=? WHERE key=?", (size, key))

    def records(self) -> list[BKCacheRecord]:
        """Every record, oldest first."""
        return [_record(r) for r in self.db.query(f"SELECT {_COLUMNS} FROM bk_cache ORDER BY created, key")]

    def delete(self, keys: Iterable[str]) -> None:
        """Drop records."""
        ks = list(keys)
        with self.db.tx() as c:
            for i in range(0, len(ks), 500):
                part = ks[i:i + 500]
                c.execute("DELETE FROM bk_cache WHERE key IN ({})".format(",".join("?" * len(part))), tuple(part))
