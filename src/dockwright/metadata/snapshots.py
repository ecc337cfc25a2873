"""The snapshotter's metadata: its own SQLite file (``<data-root>/snapshots/metadata.db``, WAL), table ``snapshots``
(key or name → id, parent id, kind, created, updated). Every statement the overlay snapshotter runs is here."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import AlreadyExists, SystemError_
from .db import private_sqlite

__all__ = ["SnapshotRow", "SnapshotsDB"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    parent INTEGER REFERENCES snapshots(id),
    kind TEXT NOT NULL CHECK (kind IN ('committed', 'active', 'view')),
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""

_CHAIN = """
WITH RECURSIVE chain(id, parent, depth) AS (
    SELECT id, parent, 0 FROM snapshots WHERE id = ?
    UNION ALL
    SELECT s.id, s.parent, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent
)
SELECT id FROM chain ORDER BY depth
"""

_COLS = "id, key, parent, kind, created, updated"


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """One snapshot's record; ``kind`` is ``committed``, ``active`` or ``view``."""

    id: int
    key: str
    parent: int | None
    kind: str
    created: float
    updated: float


class SnapshotsDB:
    """The ``snapshots`` table of one SQLite file. Not locked: the snapshotter serialises its calls."""

    def __init__(self, path: Path) -> None:
        private_sqlite(path)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise SystemError_(f"cannot open the snapshot metadata: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def tx(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on error)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def get(self, key: str) -> SnapshotRow | None:
        """The snapshot of key (or name) ``key``."""
        row = self._db.execute(f"SELECT {_COLS} FROM snapshots WHERE key = ?", (key,)).fetchone()
        return SnapshotRow(*row) if row else None

    def key_of(self, sid: int) -> str | None:
        """The key of snapshot id ``sid``."""
        row = self._db.execute("SELECT key FROM snapshots WHERE id = ?", (sid,)).fetchone()
        return str(row[0]) if row else None

    def chain(self, sid: int) -> list[int]:
        """Snapshot ``sid`` and its ancestors' ids, nearest first."""
        return [int(r[0]) for r in self._db.execute(_CHAIN, (sid,))]

    def insert(self, key: str, parent: int | None, kind: str, now: float) -> int:
        """Add a snapshot; its new id. ``AlreadyExists`` when the key is taken."""
        try:
            cur = self._db.execute(
                "INSERT INTO snapshots (key, parent, kind, created, updated) VALUES (?, ?, ?, ?, ?)",
                (key, parent, kind, now, now),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"snapshot {key}: already exists") from None
        sid = cur.lastrowid
        assert sid is not None
        return sid

    def commit(self, sid: int, name: str, now: float) -> None:
        """Make snapshot ``sid`` the committed snapshot ``name``. ``AlreadyExists`` when the name is taken."""
        try:
            self._db.execute("UPDATE snapshots SET key = ?, kind = 'committed', updated = ? WHERE id = ?",
                             (name, now, sid))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"snapshot {name}: already exists") from None

    def has_children(self, sid: int) -> bool:
        """Whether a snapshot has ``sid`` as its parent."""
        return self._db.execute("SELECT 1 FROM snapshots WHERE parent = ? LIMIT 1", (sid,)).fetchone() is not None

    def delete(self, sid: int) -> None:
        """Drop snapshot ``sid``'s record."""
        self._db.execute("DELETE FROM snapshots WHERE id = ?", (sid,))

    def ids(self) -> set[int]:
        """Every snapshot id."""
        return {int(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}

    def all(self) -> list[SnapshotRow]:
        """Every snapshot, by id (parents before children)."""
        return [SnapshotRow(*r) for r in self._db.execute(f"SELECT {_COLS} FROM snapshots ORDER BY id")]
