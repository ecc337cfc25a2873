"""What the garbage collector reads and deletes in the metadata database: its roots (the blobs and layer ChainIDs
of every image, every container's image and snapshot) and the ``layers`` records it sweeps."""

from __future__ import annotations

from collections.abc import Callable

from .bkcache import SCHEMA as BK_SCHEMA
from .containers import ContainerRoot, container_roots
from .db import MetadataDB

__all__ = ["GCMetadata"]


class GCMetadata:
    """The collector's queries on one metadata database."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db
        db.executescript(BK_SCHEMA)  # BuildKit's records are roots even before its first build

    def containers(self) -> list[ContainerRoot]:
        """Every stored container (none before the containers table exists)."""
        return container_roots(self.db)

    def referenced_blobs(self) -> set[str]:
        """Every blob an image needs (index, manifests, configs, layers), and every layer BuildKit's cache holds."""
        return {r[0] for r in self.db.query(
            "SELECT DISTINCT digest FROM image_blobs UNION "
            "SELECT DISTINCT layer_digest FROM bk_cache WHERE layer_digest IS NOT NULL")}

    def layer_chain_ids(self) -> set[str]:
        """The ChainID of every image layer and of every BuildKit cache result (the snapshots they root)."""
        return {r[0] for r in self.db.query("SELECT DISTINCT chain_id FROM image_layers UNION "
                                            "SELECT DISTINCT chain_id FROM bk_cache WHERE chain_id IS NOT NULL")}

    def drop_layer_records(self, gone: Callable[[str], bool]) -> None:
        """Delete the ``layers`` records of blobs no image references for which ``gone(digest)`` holds, in one
        transaction."""
        with self.db.tx() as c:
            rows = [r[0] for r in c.execute("SELECT digest FROM layers WHERE digest NOT IN "
                                            "(SELECT digest FROM image_blobs) AND digest NOT IN "
                                            "(SELECT layer_digest FROM bk_cache WHERE layer_digest IS NOT NULL)")]
            drop = [d for d in rows if gone(d)]
            for i in range(0, len(drop), 500):
                part = drop[i:i + 500]
                c.execute("DELETE FROM layers WHERE digest IN ({})".format(",".join("?" * len(part))), tuple(part))
