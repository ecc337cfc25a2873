"""The metadata database: one SQLite file in WAL mode.

Tables:
- ``images``: one row per image (ID = config digest) with its target descriptor (manifest or index) and the
  summary fields listing needs (created, size, labels, parent), so ``docker images`` is one query.
- ``image_layers``: the ordered layers of each image (DiffID, ChainID, compressed blob digest).
- ``layers``: per compressed layer blob: DiffID, media type, compressed size, tar size and dockerd's diff size.
- ``refs``: tags and repo digests (full normalised names) → image ID.
- ``image_blobs``: every blob an image needs (index, manifests, configs, layers): the edges GC marks from.

All writes of one operation go in one transaction (``with db.tx() as c:``), after the blobs are committed, so a
crash leaves at worst unreferenced blobs, which GC removes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MetadataDB", "ImageRecord", "LayerRecord", "private_sqlite"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    target_media_type TEXT NOT NULL,
    target_digest TEXT NOT NULL,
    target_size INTEGER NOT NULL,
    created REAL,
    created_raw TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    parent TEXT NOT NULL DEFAULT '',
    labels TEXT,
    os TEXT NOT NULL DEFAULT '',
    architecture TEXT NOT NULL DEFAULT '',
    variant TEXT NOT NULL DEFAULT '',
    last_tag_time TEXT,
    added REAL NOT NULL,
    seq INTEGER
);
CREATE INDEX IF NOT EXISTS images_parent ON images(parent);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_digest ON image_layers(digest);
CREATE TABLE IF NOT EXISTS layers (
    digest TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    diff_size INTEGER NOT NULL,
    tar_size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS layers_diff_id ON layers(diff_id);
CREATE TABLE IF NOT EXISTS refs (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
CREATE TABLE IF NOT EXISTS image_blobs (
    image_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE INDEX IF NOT EXISTS image_blobs_digest ON image_blobs(digest);
CREATE TABLE IF NOT EXISTS blob_sources (
    digest TEXT NOT NULL,
    domain TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (digest, domain, repository)
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """A row of ``layers``: a compressed layer blob, its DiffID, media type and sizes."""

    digest: str
    diff_id: str
    media_type: str
    size: int
    diff_size: int
    tar_size: int


@dataclass(slots=True)
class ImageRecord:
    """A row of ``images`` (with, when asked for, its ordered ``image_layers``)."""

    id: str
    target_media_type: str
    target_digest: str
    target_size: int
    created: float | None
    created_raw: str | None
    size: int
    parent: str
    labels: dict[str, str] | None
    os: str
    architecture: str
    variant: str
    last_tag_time: str | None
    added: float
    seq: int = 0
    layers: list[tuple[str, str, str]] = field(default_factory=list)  # (diff_id, chain_id, digest)

    @classmethod
    def from_row(cls, r: sqlite3.Row | tuple[Any, ...]) -> ImageRecord:
        """The record of a row selected with ``_IMAGE_COLS`` (labels decoded from JSON)."""
        return cls(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]) if r[8] else None,
                   r[9], r[10], r[11], r[12], r[13], r[14] or 0)


_IMAGE_COLS = ("id, target_media_type, target_digest, target_size, created, created_raw, size, parent, labels, "
               "os, architecture, variant, last_tag_time, added, seq")


def private_sqlite(path: Path) -> None:
    """Make the SQLite file ``path`` (created empty when missing) and its ``-wal``/``-shm``/``-journal`` files mode
    0600. SQLite creates those with the database file's own mode, so new ones follow."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o7777 != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            os.chmod(f"{path}{suffix}", 0o600)
        except FileNotFoundError:
            pass


class MetadataDB:
    """The metadata database (one SQLite connection, serialised by a lock); services add their tables."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_sqlite(self.path)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=OFF")
            self._conn.executescript(SCHEMA)

    def executescript(self, script: str) -> None:
        """Create the tables a service owns (idempotent DDL)."""
        with self._lock:
            self._conn.executescript(script)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on error)."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read statement."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # ---- images ----------------------------------------------------------------------------------------------
    def next_seq(self, c: sqlite3.Connection) -> int:
        """The sequence number the next image gets (one past the highest)."""
        row = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM images").fetchone()
        return int(row[0])

    def put_image(self, c: sqlite3.Connection, rec: ImageRecord, blobs: set[str]) -> bool:
        """Insert an image (no-op if it exists). Returns True when it was new."""
        if c.execute("SELECT 1 FROM images WHERE id=?", (rec.id,)).fetchone():
            c.executemany("INSERT OR IGNORE INTO image_blobs(image_id, digest) VALUES (?, ?)",
                          [(rec.id, d) for d in blobs])
            return False
        rec.seq = self.next_seq(c)
        c.execute(
            f"INSERT INTO images({_IMAGE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (rec.id, rec.target_media_type, rec.target_digest, rec.target_size, rec.created, rec.created_raw,
             rec.size, rec.parent, json.dumps(rec.labels) if rec.labels else None, rec.os, rec.architecture,
             rec.variant, rec.last_tag_time, rec.added, rec.seq),
        )
        c.executemany("INSERT INTO image_layers(image_id, idx, diff_id, chain_id, digest) VALUES (?,?,?,?,?)",
                      [(rec.id, i, d, ch, b) for i, (d, ch, b) in enumerate(rec.layers)])
        c.executemany("INSERT OR IGNORE INTO image_blobs(image_id, digest) VALUES (?, ?)",
                      [(rec.id, d) for d in blobs])
        return True

    def put_layer(self, c: sqlite3.Connection, layer: LayerRecord) -> None:
        """Insert or replace the record of a layer blob."""
        c.execute("INSERT OR REPLACE INTO layers(digest, diff_id, media_type, size, diff_size, tar_size) "
                  "VALUES (?,?,?,?,?,?)",
                  (layer.digest, layer.diff_id, layer.media_type, layer.size, layer.diff_size, layer.tar_size))

    def get_layer(self, digest: str) -> LayerRecord | None:
        """The layer whose compressed blob is ``digest``, if known."""
        rows = self.query("SELECT digest, diff_id, media_type, size, diff_size, tar_size FROM layers WHERE digest=?",
                          (digest,))
        return LayerRecord(*rows[0]) if rows else None

    def layer_by_diff_id(self, diff_id: str) -> LayerRecord | None:
        """A layer (any one) whose uncompressed tar is ``diff_id``, if known."""
        rows = self.query("SELECT digest, diff_id, media_type, size, diff_size, tar_size FROM layers "
                          "WHERE diff_id=? LIMIT 1", (diff_id,))
        return LayerRecord(*rows[0]) if rows else None

    def get_image(self, image_id: str, with_layers: bool = False) -> ImageRecord | None:
        """The image ``image_id`` (with its layers when ``with_layers``), if it exists."""
        rows = self.query(f"SELECT {_IMAGE_COLS} FROM images WHERE id=?", (image_id,))
        if not rows:
            return None
        rec = ImageRecord.from_row(rows[0])
        if with_layers:
            rec.layers = [(r[0], r[1], r[2]) for r in self.query(
                "SELECT diff_id, chain_id, digest FROM image_layers WHERE image_id=? ORDER BY idx", (image_id,))]
        return rec

    def all_images(self) -> list[ImageRecord]:
        """Every image (without layers), oldest first."""
        return [ImageRecord.from_row(r) for r in self.query(f"SELECT {_IMAGE_COLS} FROM images ORDER BY seq")]

    def image_ids_with_prefix(self, hex_prefix: str) -> list[str]:
        """The IDs of the images whose hex starts with ``hex_prefix`` (SQL wildcards in it dropped)."""
        like = "sha256:" + hex_prefix.replace("%", "").replace("_", "") + "%"
        return [r[0] for r in self.query("SELECT id FROM images WHERE id LIKE ?", (like,))]

    def children(self, image_id: str) -> list[str]:
        """The IDs of the images whose parent is ``image_id``."""
        return [r[0] for r in self.query("SELECT id FROM images WHERE parent=?", (image_id,))]

    def image_layer_rows(self) -> list[tuple[str, str, int]]:
        """(image_id, chain_id, diff_size) for every image layer — for shared-size and df."""
        return [(r[0], r[1], r[2]) for r in self.query(
            "SELECT il.image_id, il.chain_id, COALESCE(l.diff_size, 0) FROM image_layers il "
            "LEFT JOIN layers l ON l.digest = il.digest")]

    def delete_image(self, c: sqlite3.Connection, image_id: str) -> None:
        """Remove an image with its layers, blobs and references; its children lose their parent."""
        c.execute("DELETE FROM images WHERE id=?", (image_id,))
        c.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
        c.execute("DELETE FROM image_blobs WHERE image_id=?", (image_id,))
        c.execute("DELETE FROM refs WHERE image_id=?", (image_id,))
        c.execute("UPDATE images SET parent='' WHERE parent=?", (image_id,))

    def set_last_tag_time(self, c: sqlite3.Connection, image_id: str, when: str) -> None:
        """Record when the image was last tagged."""
        c.execute("UPDATE images SET last_tag_time=? WHERE id=?", (when, image_id))

    # ---- references ------------------------------------------------------------------------------------------
    def set_ref(self, c: sqlite3.Connection, name: str, image_id: str, kind: str, now: float) -> str | None:
        """Point ``name`` at ``image_id``. Returns the image it pointed at before, if another."""
        row = c.execute("SELECT image_id FROM refs WHERE name=?", (name,)).fetchone()
        c.execute("INSERT OR REPLACE INTO refs(name, image_id, kind, created) VALUES (?,?,?,?)",
                  (name, image_id, kind, now))
        if row and row[0] != image_id:
            return str(row[0])
        return None

    def get_ref(self, name: str) -> str | None:
        """The image ID that reference ``name`` points at, if any."""
        rows = self.query("SELECT image_id FROM refs WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def refs_of(self, image_id: str) -> list[tuple[str, str]]:
        """(name, kind) of an image, in creation order."""
        return [(r[0], r[1]) for r in self.query(
            "SELECT name, kind FROM refs WHERE image_id=? ORDER BY created, name", (image_id,))]

    def all_refs(self) -> list[tuple[str, str, str]]:
        """(name, image_id, kind) of every reference, in creation order."""
        return [(r[0], r[1], r[2]) for r in self.query("SELECT name, image_id, kind FROM refs ORDER BY created, name")]

    def refs_with_prefix(self, prefix: str) -> list[tuple[str, str, str]]:
        """(name, image_id, kind) of the references whose name starts with ``prefix``, in creation order."""
        return [(r[0], r[1], r[2]) for r in self.query(
            "SELECT name, image_id, kind FROM refs WHERE substr(name, 1, ?) = ? ORDER BY created, name",
            (len(prefix), prefix))]

    def delete_ref(self, c: sqlite3.Connection, name: str) -> None:
        """Remove the reference ``name``."""
        c.execute("DELETE FROM refs WHERE name=?", (name,))

    # ---- GC --------------------------------------------------------------------------------------------------
    def referenced_blobs(self) -> set[str]:
        """Every blob digest some image needs (the GC roots)."""
        return {r[0] for r in self.query("SELECT DISTINCT digest FROM image_blobs")}

    def drop_unreferenced_layers(self, c: sqlite3.Connection) -> None:
        """Forget the layer records of blobs no image needs any more."""
        c.execute("DELETE FROM layers WHERE digest NOT IN (SELECT digest FROM image_blobs)")

    # ---- where blobs came from / went to (for cross-repository mounts) -------------------------------------
    def add_blob_source(self, c: sqlite3.Connection, digest: str, domain: str, repository: str) -> None:
        """Record that the blob ``digest`` is in ``repository`` of the registry ``domain``."""
        c.execute("INSERT OR IGNORE INTO blob_sources(digest, domain, repository) VALUES (?,?,?)",
                  (digest, domain, repository))

    def blob_sources(self, digest: str, domain: str) -> list[str]:
        """The repositories of the registry ``domain`` known to have the blob ``digest``."""
        return [r[0] for r in self.query("SELECT repository FROM blob_sources WHERE digest=? AND domain=?",
                                         (digest, domain))]

    def counts(self) -> int:
        """The number of images."""
        return int(self.query("SELECT COUNT(*) FROM images")[0][0])

    def get_kv(self, key: str) -> str | None:
        """The value stored under ``key`` in the ``kv`` table."""
        rows = self.query("SELECT value FROM kv WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_kv(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` in the ``kv`` table."""
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)", (key, value))
