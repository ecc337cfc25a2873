"""The classic builder's cache records in the metadata database: which image a step made, keyed by (parent image and
config, the step as recorded in the history), with their use counts and sizes. Every SQL statement of the build
cache is here; the cache's policy (probes, ``cachefrom``, pruning) is the builder's."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .db import MetadataDB

__all__ = ["BuildCacheRecord", "BuildCacheStore", "SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS build_cache (
    parent TEXT NOT NULL,
    created_by TEXT NOT NULL,
    image_id TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    usage_count INTEGER NOT NULL DEFAULT 1,
    size INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'regular',
    description TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (parent, created_by)
);
"""


@dataclass(frozen=True)
class BuildCacheRecord:
    """One row of the build cache: the step ``created_by`` on ``parent`` made ``image_id``."""

    parent: str
    created_by: str
    image_id: str
    created: float
    last_used: float
    usage_count: int
    size: int
    kind: str
    description: str


class BuildCacheStore:
    """The ``build_cache`` table (made if missing when the store is opened)."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db
        db.executescript(SCHEMA)

    def get(self, parent: str, created_by: str) -> str | None:
        """The image a step made, if it is still stored; a hit counts as a use (``last_used``, ``usage_count``)."""
        rows = self.db.query("SELECT image_id FROM build_cache WHERE parent=? AND created_by=?",
                             (parent, created_by))
        if not rows:
            return None
        image_id = rows[0][0]
        if self.db.get_image(image_id) is None:
            return None
        with self.db.tx() as c:
            c.execute("UPDATE build_cache SET last_used=?, usage_count=usage_count+1 WHERE parent=? AND "
                      "created_by=?", (time.time(), parent, created_by))
        return str(image_id)

    def put(self, parent: str, created_by: str, image_id: str, size: int, kind: str) -> None:
        """Record (or replace) the image a step made."""
        now = time.time()
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO build_cache(parent, created_by, image_id, created, last_used, "
                      "usage_count, size, kind, description) VALUES (?,?,?,?,?,1,?,?,?)",
                      (parent, created_by, image_id, now, now, size, kind, created_by[:200]))

    def records(self) -> list[BuildCacheRecord]:
        """Every record, oldest first."""
        rows = self.db.query("SELECT parent, created_by, image_id, created, last_used, usage_count, size, "
                             "kind, description FROM build_cache ORDER BY created")
        return [BuildCacheRecord(*row) for row in rows]

    def delete(self, parent: str, created_by: str) -> None:
        """Drop one record."""
        with self.db.tx() as c:
            c.execute("DELETE FROM build_cache WHERE parent=? AND created_by=?", (parent, created_by))

    def set_image_parent(self, image_id: str, parent: str) -> None:
        """Give a ``cachefrom`` image the build's image as parent (dockerd's cache hit on a last history entry)."""
        with self.db.tx() as c:
            c.execute("UPDATE images SET parent=? WHERE id=?", (parent, image_id))
