"""Container records in the metadata database (table ``containers``): id, name, image, creation time and the
JSON of its config, host config, state, network attachment and mount points. The table gains its ``network`` and
``mounts`` columns when a data root of an older version is opened."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from .db import MetadataDB

__all__ = ["ContainerRow", "ContainerRecords", "ContainerRoot", "container_roots"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    image_id TEXT NOT NULL,
    image_ref TEXT NOT NULL,
    created TEXT NOT NULL,
    config TEXT NOT NULL,
    host_config TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
"""
_NETWORK_COLUMN = "ALTER TABLE containers ADD COLUMN network TEXT NOT NULL DEFAULT ''"
_MOUNTS_COLUMN = "ALTER TABLE containers ADD COLUMN mounts TEXT NOT NULL DEFAULT ''"

_COLS = "id, name, image_id, image_ref, created, config, host_config, state, network, mounts"


@dataclass(frozen=True, slots=True)
class ContainerRow:
    """One stored container: ``config``, ``host_config`` and ``state`` are JSON objects, ``network`` (its
    attachment) and ``mounts`` (its mount points) JSON or ``""`` when it has none."""

    id: str
    name: str
    image_id: str
    image_ref: str
    created: str
    config: str
    host_config: str
    state: str
    network: str
    mounts: str


@dataclass(frozen=True, slots=True)
class ContainerRoot:
    """What the garbage collector needs of a container: its image and whether its process was last running."""

    id: str
    image_id: str
    running: bool
    pid: int


class ContainerRecords:
    """The ``containers`` table: created (and migrated) when the containers service opens it."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.query("PRAGMA table_info(containers)")}
        if "network" not in columns:
            db.executescript(_NETWORK_COLUMN)  # a data root of a version before networking
        if "mounts" not in columns:
            db.executescript(_MOUNTS_COLUMN)  # a data root of a version before volumes

    def all(self) -> list[ContainerRow]:
        """Every stored container."""
        return [ContainerRow(*r) for r in self.db.query(f"SELECT {_COLS} FROM containers")]

    def save(self, row: ContainerRow) -> None:
        """Insert or replace a container's record."""
        with self.db.tx() as conn:
            conn.execute(f"INSERT OR REPLACE INTO containers({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (row.id, row.name, row.image_id, row.image_ref, row.created, row.config, row.host_config,
                          row.state, row.network, row.mounts))

    def delete(self, cid: str) -> None:
        """Drop a container's record (none is no error)."""
        with self.db.tx() as conn:
            conn.execute("DELETE FROM containers WHERE id=?", (cid,))


def container_roots(db: MetadataDB) -> list[ContainerRoot]:
    """Every stored container as a GC root (none when the table does not exist yet). A state that cannot be read
    counts as not running."""
    try:
        rows = db.query("SELECT id, image_id, state FROM containers")
    except sqlite3.OperationalError:  # no containers table yet
        return []
    out = []
    for cid, image_id, state in rows:
        running, pid = False, 0
        try:
            st = json.loads(state)
            pid = int(st.get("Pid") or 0)
            running = bool(st.get("Running"))
        except (ValueError, TypeError, AttributeError):
            running, pid = False, 0
        out.append(ContainerRoot(str(cid), str(image_id), running, pid))
    return out
