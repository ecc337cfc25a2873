"""What the garbage collector reads and deletes in the metadata database: its roots (the blobs and layer ChainIDs
of every image, every container's image and snapshot) and the ``layers`` records it sweeps."""

from __future__ import annotations

from collections.abc import Callable

from .containers import ContainerRoot, container_roots
from .db import MetadataDB

__all__ = ["GCMetadata"]


class GCMetadata:
    """The collector's queries on one metadata database."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    def containers(self) -> list[ContainerRoot]:
        """Every stored container (none before the containers table exists)."""
        return container_roots(self.db)

    def referenced_blobs(self) -> set[str]:
        """Every blob an image needs (index, manifests, configs, layers)."""
        return {r[0] for r in self.db.query("SELECT DISTINCT digest FROM image_blobs")}

    def layer_chain_ids(self) -> set[str]:
        """The ChainID of every image layer (the snapshots images root)."""
        return {r[0] for r in self.db.query("SELECT DISTINCT chain_id FROM image_layers")}

    def drop_layer_records(self, gone: Callable[[str], bool]) -> None:
        """Delete the ``layers`` records of blobs no image references for which ``gone(digest)`` holds, in one
        transaction."""
        with self.db.tx() as c:
            rows = [r[0] for r in c.execute("SELECT digest FROM layers WHERE digest NOT IN "
                                            "(SELECT digest FROM image_blobs)")]
            drop = [d for d in rows if gone(d)]
            for i in range(0, len(drop), 500):
                part = drop[i:i + 500]
                c.execute("DELETE FROM layers WHERE digest IN ({})".format(",".join("?" * len(part))), tuple(part))
