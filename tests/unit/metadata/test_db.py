"""Unit tests of metadata/db.py on a real SQLite file in tmp_path: WAL mode, file modes, the records round-trip,
transactions, references, the GC edges and the key-value table."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from dockwright.metadata.db import ImageRecord, LayerRecord, MetadataDB, private_sqlite


def dg(n: int) -> str:
    return f"sha256:{n:064x}"


def image(n: int, **kw: object) -> ImageRecord:
    fields: dict[str, object] = dict(
        id=dg(n), target_media_type="application/vnd.oci.image.manifest.v1+json", target_digest=dg(1000 + n),
        target_size=500 + n, created=1_500_000_000.5, created_raw="2017-07-14T02:40:00.5Z", size=1234, parent="",
        labels={"a": "b"}, os="linux", architecture="amd64", variant="", last_tag_time=None, added=1.0 + n)
    fields.update(kw)
    return ImageRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    d = MetadataDB(tmp_path / "meta.db")
    yield d  # type: ignore[misc]
    d.close()


def test_wal_mode_and_private_files(db: MetadataDB) -> None:
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    with db.tx() as c:
        c.execute("INSERT INTO kv(key, value) VALUES ('x', 'y')")
    assert stat.S_IMODE(db.path.stat().st_mode) == 0o600
    wal = Path(f"{db.path}-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    tables = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "image_layers", "layers", "refs", "image_blobs", "blob_sources", "kv"} <= tables


def test_private_sqlite_fixes_an_open_mode(tmp_path: Path) -> None:
    p = tmp_path / "x.db"
    p.write_bytes(b"")
    p.chmod(0o644)
    Path(f"{p}-wal").write_bytes(b"")
    Path(f"{p}-wal").chmod(0o666)
    private_sqlite(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{p}-wal").stat().st_mode) == 0o600
    q = tmp_path / "new.db"
    private_sqlite(q)
    assert q.exists() and stat.S_IMODE(q.stat().st_mode) == 0o600


def test_image_round_trip_with_layers(db: MetadataDB) -> None:
    rec = image(1, layers=[(dg(11), dg(11), dg(21)), (dg(12), dg(31), dg(22))])
    with db.tx() as c:
        assert db.put_image(c, rec, {dg(1001), dg(1), dg(21), dg(22)}) is True
    got = db.get_image(dg(1), with_layers=True)
    assert got is not None
    assert got.layers == rec.layers
    assert (got.id, got.target_media_type, got.target_digest, got.target_size, got.created, got.created_raw,
            got.size, got.parent, got.labels, got.os, got.architecture, got.variant, got.last_tag_time,
            got.added) == (rec.id, rec.target_media_type, rec.target_digest, rec.target_size, rec.created,
                           rec.created_raw, rec.size, rec.parent, {"a": "b"}, "linux", "amd64", "", None, 2.0)
    assert got.seq == 1
    assert db.get_image(dg(1)).layers == []  # type: ignore[union-attr]
    assert db.get_image(dg(99)) is None
    assert db.referenced_blobs() == {dg(1001), dg(1), dg(21), dg(22)}


def test_put_image_twice_is_a_no_op_that_adds_blobs(db: MetadataDB) -> None:
    with db.tx() as c:
        db.put_image(c, image(1), {dg(1)})
    with db.tx() as c:
        assert db.put_image(c, image(1, size=999), {dg(5)}) is False
    assert db.get_image(dg(1)).size == 1234  # type: ignore[union-attr]
    assert db.referenced_blobs() == {dg(1), dg(5)}
    assert db.counts() == 1


def test_images_are_listed_in_insertion_order_by_seq(db: MetadataDB) -> None:
    for n in (5, 3, 9):
        with db.tx() as c:
            db.put_image(c, image(n, labels=None), set())
    listed = db.all_images()
    assert [r.id for r in listed] == [dg(5), dg(3), dg(9)]
    assert [r.seq for r in listed] == [1, 2, 3]
    assert listed[0].labels is None


def test_a_failed_transaction_is_rolled_back(db: MetadataDB) -> None:
    with pytest.raises(RuntimeError):
        with db.tx() as c:
            db.put_image(c, image(1), {dg(1)})
            raise RuntimeError("boom")
    assert db.get_image(dg(1)) is None and db.referenced_blobs() == set()
    with db.tx() as c:  # the connection is usable afterwards
        db.put_image(c, image(1), set())
    assert db.counts() == 1


def test_constraints_refuse_a_duplicate_and_a_missing_field(db: MetadataDB) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        with db.tx() as c:
            c.execute("INSERT INTO refs(name, image_id, kind, created) VALUES ('a', 'x', 'tag', 1)")
            c.execute("INSERT INTO refs(name, image_id, kind, created) VALUES ('a', 'y', 'tag', 1)")
    assert db.get_ref("a") is None  # the whole transaction went
    with pytest.raises(sqlite3.IntegrityError):
        with db.tx() as c:
            c.execute("INSERT INTO images(id, target_media_type, target_digest, target_size, added) "
                      "VALUES ('i', 'm', NULL, 1, 1)")
    with pytest.raises(sqlite3.IntegrityError):
        with db.tx() as c:
            c.execute("INSERT INTO image_layers(image_id, idx, diff_id, chain_id, digest) VALUES ('i',0,'d','c','b')")
            c.execute("INSERT INTO image_layers(image_id, idx, diff_id, chain_id, digest) VALUES ('i',0,'e','f','g')")


def test_layers_round_trip_and_replace(db: MetadataDB) -> None:
    layer = LayerRecord(dg(21), dg(11), "application/vnd.oci.image.layer.v1.tar+gzip", 100, 300, 310)
    with db.tx() as c:
        db.put_layer(c, layer)
    assert db.get_layer(dg(21)) == layer
    assert db.layer_by_diff_id(dg(11)) == layer
    assert db.get_layer(dg(22)) is None and db.layer_by_diff_id(dg(12)) is None
    bigger = LayerRecord(dg(21), dg(11), layer.media_type, 100, 400, 410)
    with db.tx() as c:
        db.put_layer(c, bigger)
    assert db.get_layer(dg(21)) == bigger


def test_image_layer_rows_join_the_layer_sizes(db: MetadataDB) -> None:
    with db.tx() as c:
        db.put_layer(c, LayerRecord(dg(21), dg(11), "m", 1, 300, 310))
        db.put_image(c, image(1, layers=[(dg(11), dg(11), dg(21)), (dg(12), dg(31), dg(22))]), set())
    assert sorted(db.image_layer_rows()) == sorted([(dg(1), dg(11), 300), (dg(1), dg(31), 0)])


def test_prefix_lookup_escapes_like_wildcards(db: MetadataDB) -> None:
    with db.tx() as c:
        db.put_image(c, image(0xABC), set())
        db.put_image(c, image(0xABD), set())
    hex1 = dg(0xABC)[7:]
    assert sorted(db.image_ids_with_prefix(hex1[:62])) == [dg(0xABC), dg(0xABD)]
    assert db.image_ids_with_prefix(hex1) == [dg(0xABC)]
    assert sorted(db.image_ids_with_prefix("%")) == sorted([dg(0xABC), dg(0xABD)])  # "%" dropped, not a wildcard
    assert db.image_ids_with_prefix("_" * 63 + "c") == []  # "_" dropped too: "c" is no prefix of either


def test_references(db: MetadataDB) -> None:
    with db.tx() as c:
        db.put_image(c, image(1), set())
        db.put_image(c, image(2), set())
        assert db.set_ref(c, "docker.io/library/a:latest", dg(1), "tag", 10.0) is None
        assert db.set_ref(c, "docker.io/library/a@" + dg(1001), dg(1), "digest", 11.0) is None
        assert db.set_ref(c, "docker.io/library/b:1", dg(2), "tag", 5.0) is None
    assert db.get_ref("docker.io/library/a:latest") == dg(1)
    assert db.refs_of(dg(1)) == [("docker.io/library/a:latest", "tag"), ("docker.io/library/a@" + dg(1001), "digest")]
    assert db.all_refs()[0] == ("docker.io/library/b:1", dg(2), "tag")  # creation order
    assert [r[0] for r in db.refs_with_prefix("docker.io/library/a")] == [
        "docker.io/library/a:latest", "docker.io/library/a@" + dg(1001)]
    assert db.refs_with_prefix("docker.io/library/a%") == []  # a prefix, not a LIKE pattern
    with db.tx() as c:  # moving a tag reports the image it left
        assert db.set_ref(c, "docker.io/library/a:latest", dg(2), "tag", 12.0) == dg(1)
        assert db.set_ref(c, "docker.io/library/a:latest", dg(2), "tag", 13.0) is None
        db.delete_ref(c, "docker.io/library/b:1")
    assert db.get_ref("docker.io/library/a:latest") == dg(2)
    assert db.get_ref("docker.io/library/b:1") is None


def test_delete_image_removes_its_rows_and_orphans_its_children(db: MetadataDB) -> None:
    with db.tx() as c:
        db.put_image(c, image(1, layers=[(dg(11), dg(11), dg(21))]), {dg(21), dg(1)})
        db.put_image(c, image(2, parent=dg(1)), {dg(2)})
        db.set_ref(c, "r:1", dg(1), "tag", 1.0)
        db.set_last_tag_time(c, dg(2), "2020-01-01T00:00:00Z")
    assert db.children(dg(1)) == [dg(2)]
    with db.tx() as c:
        db.delete_image(c, dg(1))
    assert db.get_image(dg(1)) is None and db.get_ref("r:1") is None
    assert db.query("SELECT COUNT(*) FROM image_layers")[0][0] == 0
    assert db.referenced_blobs() == {dg(2)}
    child = db.get_image(dg(2))
    assert child is not None and child.parent == "" and child.last_tag_time == "2020-01-01T00:00:00Z"


def test_drop_unreferenced_layers(db: MetadataDB) -> None:
    with db.tx() as c:
        db.put_layer(c, LayerRecord(dg(21), dg(11), "m", 1, 1, 1))
        db.put_layer(c, LayerRecord(dg(22), dg(12), "m", 1, 1, 1))
        db.put_image(c, image(1), {dg(21)})
        db.drop_unreferenced_layers(c)
    assert db.get_layer(dg(21)) is not None and db.get_layer(dg(22)) is None


def test_blob_sources(db: MetadataDB) -> None:
    with db.tx() as c:
        db.add_blob_source(c, dg(21), "registry:5000", "a/b")
        db.add_blob_source(c, dg(21), "registry:5000", "a/b")
        db.add_blob_source(c, dg(21), "registry:5000", "c")
        db.add_blob_source(c, dg(21), "docker.io", "library/x")
    assert sorted(db.blob_sources(dg(21), "registry:5000")) == ["a/b", "c"]
    assert db.blob_sources(dg(21), "other") == [] and db.blob_sources(dg(22), "docker.io") == []


def test_kv_and_persistence_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    db = MetadataDB(path)
    assert db.get_kv("k") is None
    db.set_kv("k", "v1")
    db.set_kv("k", "v2")
    with db.tx() as c:
        db.put_image(c, image(1, layers=[(dg(11), dg(11), dg(21))]), {dg(21)})
    db.close()
    again = MetadataDB(path)  # the schema is idempotent; the data is on disk
    try:
        assert again.get_kv("k") == "v2"
        rec = again.get_image(dg(1), with_layers=True)
        assert rec is not None and rec.labels == {"a": "b"} and rec.layers == [(dg(11), dg(11), dg(21))]
        assert again.query("PRAGMA journal_mode")[0][0] == "wal"
    finally:
        again.close()


def test_a_second_connection_reads_committed_writes(db: MetadataDB) -> None:
    with db.tx() as c:
        db.put_image(c, image(1), set())
    other = sqlite3.connect(str(db.path))
    try:
        assert other.execute("SELECT id FROM images").fetchall() == [(dg(1),)]
    finally:
        other.close()


def test_transactions_from_threads_serialise(db: MetadataDB) -> None:
    errors: list[BaseException] = []

    def worker(base: int) -> None:
        try:
            for i in range(20):
                with db.tx() as c:
                    db.put_image(c, image(base + i), {dg(base + i)})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(1, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert db.counts() == 60
    assert sorted(r.seq for r in db.all_images()) == list(range(1, 61))


def test_executescript_adds_a_services_tables(db: MetadataDB) -> None:
    db.executescript("CREATE TABLE IF NOT EXISTS extra (k TEXT PRIMARY KEY);")
    db.executescript("CREATE TABLE IF NOT EXISTS extra (k TEXT PRIMARY KEY);")
    assert db.query("SELECT name FROM sqlite_master WHERE name='extra'") == [("extra",)]
