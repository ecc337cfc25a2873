"""What the distribution side keeps in the metadata database: the gzip form a push made of each plain layer
(table ``compressed_layers``), and whether a manifest came from a registry (``blob_sources``)."""

from __future__ import annotations

from .db import MetadataDB

__all__ = ["SCHEMA", "ensure_schema", "compressed_layer", "remember_compressed_layer", "was_pulled"]

# The gzip digest and size a push gave each layer stored as a plain tar (by DiffID): the next push, to this registry
# or another, finds the blob by it (HEAD, cross-repository mount) instead of compressing again. Metadata only, no
# blob: the compression is deterministic (fixed input blocks, the daemon's level), a row whose layer is gone names
# a blob that is still that layer's gzip form, and a recompression that differs (another ISA-L version or level) is
# uploaded under its own digest, which replaces the row.
SCHEMA = """
CREATE TABLE IF NOT EXISTS compressed_layers (
    diff_id TEXT NOT NULL,
    compression TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (diff_id, compression)
);
"""


def ensure_schema(db: MetadataDB) -> None:
    """Create the distribution tables when they are not there yet."""
    db.executescript(SCHEMA)


def was_pulled(db: MetadataDB, manifest_digest: str) -> bool:
    """Whether a pull brought this manifest (it is then known in a repository of some registry)."""
    return bool(db.query("SELECT 1 FROM blob_sources WHERE digest=? LIMIT 1", (manifest_digest,)))


def compressed_layer(db: MetadataDB, diff_id: str) -> tuple[str, int] | None:
    """The digest and size of the gzip blob a push made of the plain layer ``diff_id``, if one did."""
    rows = db.query("SELECT digest, size FROM compressed_layers WHERE diff_id=? AND compression='gzip'", (diff_id,))
    return (str(rows[0][0]), int(rows[0][1])) if rows else None


def remember_compressed_layer(db: MetadataDB, diff_id: str, digest: str, size: int) -> None:
    """Record the gzip blob a push made of the plain layer ``diff_id``."""
    with db.tx() as c:
        c.execute("INSERT OR REPLACE INTO compressed_layers(diff_id, compression, digest, size) "
                  "VALUES (?, 'gzip', ?, ?)", (diff_id, digest, size))
