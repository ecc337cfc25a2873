"""The build cache's records: a hit counts as a use, a record of an image that is gone is a miss, records come
oldest first, and a ``cachefrom`` image can be given a parent."""

from __future__ import annotations

import time
from pathlib import Path

from dockwright.metadata.buildcache import BuildCacheStore
from dockwright.metadata.db import ImageRecord, MetadataDB


def _image(db: MetadataDB, image_id: str, parent: str = "") -> None:
    rec = ImageRecord(image_id, "", "", 0, None, None, 0, parent, None, "linux", "amd64", "", None, time.time())
    with db.tx() as c:
        db.put_image(c, rec, set())


def test_records_hits_and_misses(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    store = BuildCacheStore(db)
    BuildCacheStore(db)  # the schema is made once, opening again is harmless
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    _image(db, a)
    store.put("p|{}", "/bin/sh -c #(nop)  ENV A=1", a, 0, "internal")
    store.put("p|{}", "RUN x", b, 5, "regular")
    assert store.get("p|{}", "/bin/sh -c #(nop)  ENV A=1") == a
    assert store.get("p|{}", "RUN x") is None  # its image is gone
    assert store.get("q|{}", "RUN x") is None
    records = store.records()
    assert [(r.image_id, r.kind, r.size, r.usage_count) for r in records] == [(a, "internal", 0, 2),
                                                                              (b, "regular", 5, 1)]
    assert records[0].description == "/bin/sh -c #(nop)  ENV A=1" and records[0].last_used >= records[0].created
    store.delete("p|{}", "RUN x")
    assert [r.image_id for r in store.records()] == [a]


def test_set_image_parent(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    store = BuildCacheStore(db)
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    _image(db, a)
    _image(db, b)
    store.set_image_parent(b, a)
    rec = db.get_image(b)
    assert rec is not None and rec.parent == a
