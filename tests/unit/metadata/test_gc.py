"""The collector's queries: its roots and the layer records it drops."""

from __future__ import annotations

import time
from pathlib import Path

from dockwright.metadata.db import ImageRecord, LayerRecord, MetadataDB
from dockwright.metadata.gc import GCMetadata


def test_roots_and_layer_records(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    rec = ImageRecord("sha256:i", "m", "sha256:m", 1, None, None, 0, "", None, "linux", "amd64", "", None,
                      time.time(), layers=[("sha256:d", "sha256:chain", "sha256:l")])
    with db.tx() as c:
        db.put_image(c, rec, {"sha256:m", "sha256:l"})
        for d in ("sha256:l", "sha256:x", "sha256:y"):
            db.put_layer(c, LayerRecord(d, "sha256:d" + d[-1], "t", 1, 1, 1))
    meta = GCMetadata(db)
    assert meta.referenced_blobs() == {"sha256:m", "sha256:l"}
    assert meta.layer_chain_ids() == {"sha256:chain"}
    assert meta.containers() == []
    meta.drop_layer_records(lambda d: d == "sha256:x" or d == "sha256:l")
    assert db.get_layer("sha256:x") is None
    assert db.get_layer("sha256:y") is not None and db.get_layer("sha256:l") is not None  # referenced: kept
