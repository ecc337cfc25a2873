"""Volume records in the metadata database (table ``volumes``: name, driver, labels, options, creation time,
whether it is anonymous); the volumes service keeps them in memory and writes through :class:`VolumeRecords`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .db import MetadataDB

__all__ = ["VolumeRow", "VolumeRecords"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL,
    created REAL NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(slots=True)
class VolumeRow:
    """One stored volume; ``labels`` and ``options`` are None when empty (or unreadable). Not frozen: the engine's
    :class:`~dockwright.engine.volumes.Volume` extends it."""

    name: str
    driver: str
    labels: dict[str, str] | None
    options: dict[str, str] | None
    created: float
    anonymous: bool


class VolumeRecords:
    """The ``volumes`` table (created on first use)."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db
        db.executescript(SCHEMA)

    def all(self) -> list[VolumeRow]:
        """Every stored volume."""
        return [VolumeRow(r[0], r[1], _load(r[2]), _load(r[3]), float(r[4]), bool(r[5]))
                for r in self.db.query("SELECT name, driver, labels, options, created, anonymous FROM volumes")]

    def save(self, v: VolumeRow) -> None:
        """Insert or replace a volume's record."""
        with self.db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO volumes(name, driver, labels, options, created, anonymous) "
                         "VALUES (?,?,?,?,?,?)", (v.name, v.driver, json.dumps(v.labels) if v.labels else "",
                                                  json.dumps(v.options) if v.options else "", v.created,
                                                  int(v.anonymous)))

    def delete(self, name: str) -> None:
        """Drop a volume's record."""
        with self.db.tx() as conn:
            conn.execute("DELETE FROM volumes WHERE name=?", (name,))


def _load(text: str) -> Any:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None
