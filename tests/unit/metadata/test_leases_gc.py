"""Leases and the garbage collector on a real store (content, SQLite, overlay snapshotter directories)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from dockwright.content.store import ContentStore, current_lease
from dockwright.engine.gc import GarbageCollector
from dockwright.metadata.db import ImageRecord, MetadataDB
from dockwright.metadata.gc import GCMetadata
from dockwright.metadata.leases import GCLock, LeaseManager
from dockwright.snapshots import OverlaySnapshotter


@pytest.fixture
def store(tmp_path: Path) -> tuple[ContentStore, MetadataDB, LeaseManager, GarbageCollector, OverlaySnapshotter]:
    content = ContentStore(tmp_path / "content")
    db = MetadataDB(tmp_path / "metadata.db")
    leases = LeaseManager(db)
    sn = OverlaySnapshotter(tmp_path / "snapshots")
    (tmp_path / "tmp").mkdir()
    gc = GarbageCollector(content, GCMetadata(db), leases, sn, tmp_dir=tmp_path / "tmp")
    return content, db, leases, gc, sn


def _image(db: MetadataDB, image_id: str, blobs: set[str]) -> None:
    rec = ImageRecord(image_id, "m", image_id, 1, None, None, 0, "", None, "linux", "amd64", "", None, time.time())
    with db.tx() as c:
        db.put_image(c, rec, blobs)


def test_unreferenced_blob_swept_referenced_and_leased_kept(store) -> None:  # type: ignore[no-untyped-def]
    content, db, leases, gc, _ = store
    kept = content.put(b"referenced")
    leased = content.put(b"leased")
    orphan = content.put(b"orphan")
    _image(db, kept, {kept})
    lease = leases.create("test")
    lease.add("content", leased)
    rep = gc.collect()
    assert rep.removed_blobs == [orphan] and rep.bytes >= len(b"orphan")
    assert content.exists(kept) and content.exists(leased) and not content.exists(orphan)
    lease.release()
    gc.collect()
    assert not content.exists(leased) and content.exists(kept)


def test_commit_under_current_lease_is_leased(store) -> None:  # type: ignore[no-untyped-def]
    content, _, leases, gc, _ = store
    lease = leases.create("pull")
    token = current_lease.set(lease)
    try:
        w = content.writer("pull-x")
        w.write(b"data")
        digest = w.commit()
    finally:
        current_lease.reset(token)
    assert ("content", digest) in leases.resources(lease.id)
    assert ("ingest", "pull-x") in leases.resources(lease.id)
    gc.collect()
    assert content.exists(digest)


def test_dead_leases_dropped_and_expired_ones_protect_nothing(store) -> None:  # type: ignore[no-untyped-def]
    content, db, leases, gc, _ = store
    other = LeaseManager(db, pid=os.getpid() + 1)  # a previous daemon's
    old = other.create("pull")
    d1 = content.put(b"one")
    old.add("content", d1)
    expired = leases.create("pull", ttl=-1)
    d2 = content.put(b"two")
    expired.add("content", d2)
    gc.collect()
    assert not content.exists(d1) and not content.exists(d2)
    assert leases.drop_dead() == 2 and leases.list() == []


def test_ingests_failed_removed_resumable_kept(store) -> None:  # type: ignore[no-untyped-def]
    content, _, _, gc, _ = store
    w = content.writer("pull-abc")
    w.write(b"partial")
    w.close()
    w2 = content.writer("other-ref")
    w2.write(b"x")
    w2.close()
    rep = gc.collect()
    assert rep.removed_ingests == ["other-ref"]
    assert [r for r, _ in content.ingests()] == ["pull-abc"]
    old = time.time() - 2 * 24 * 3600
    os.utime(content.ingest_dir / "pull-abc", (old, old))
    gc.collect()
    assert list(content.ingests()) == []


def test_startup_collection_empties_tmp(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, _, gc, _ = store
    d = tmp_path / "tmp" / "build-1" / "ctx"
    d.mkdir(parents=True)
    (d / "f").write_bytes(b"x" * 10000)
    assert gc.collect().dirs == 0 and d.exists()  # while running: temporary dirs belong to operations
    rep = gc.recover(tmp_path, tmp_path / "exec")
    assert rep.dirs == 1 and rep.bytes >= 10000 and list((tmp_path / "tmp").iterdir()) == []


def test_snapshots_marked_from_images_and_leases(store) -> None:  # type: ignore[no-untyped-def]
    content, db, leases, gc, sn = store
    cfg = content.put(b"cfg")
    sn.prepare("k1")
    sn.commit("chain-a", "k1")
    sn.prepare("k2", "chain-a")
    sn.commit("chain-b", "k2")
    sn.prepare("k3")
    sn.commit("chain-orphan", "k3")
    _image(db, cfg, {cfg})
    with db.tx() as c:
        c.execute("INSERT INTO image_layers(image_id, idx, diff_id, chain_id, digest) VALUES (?,?,?,?,?)",
                  (cfg, 0, "d", "chain-b", cfg))
    lease = leases.create("build")
    sn.prepare("k4")
    sn.commit("chain-leased", "k4")
    lease.add("snapshot", "chain-leased")
    rep = gc.collect()
    assert rep.snapshots == 1
    assert sn.exists("chain-a") and sn.exists("chain-b") and sn.exists("chain-leased")
    assert not sn.exists("chain-orphan")


def test_gc_lock_orders_a_resource_added_during_a_collection(store) -> None:  # type: ignore[no-untyped-def]
    """A resource added while a collection runs waits for its sweep: the blob it claims is looked for after."""
    content, _, leases, gc, _ = store
    lease = leases.create("pull")
    digest = content.put(b"found")
    order: list[str] = []
    with leases.lock.exclusive():  # a collection in progress
        t = threading.Thread(target=lambda: (lease.add("content", digest), order.append("added")))
        t.start()
        time.sleep(0.1)
        order.append("swept")
    t.join()
    assert order == ["swept", "added"]
    gc.collect()
    assert content.exists(digest)


def test_gc_lock_shared_nests_and_excludes_the_collector() -> None:
    lock = GCLock()
    with lock.shared():
        with lock.shared():
            pass
        got = threading.Event()

        def collector() -> None:
            with lock.exclusive():
                got.set()

        t = threading.Thread(target=collector)
        t.start()
        assert not got.wait(0.1)
        with lock.shared():  # nested while the collector waits: no deadlock
            pass
    t.join(2)
    assert got.is_set()
