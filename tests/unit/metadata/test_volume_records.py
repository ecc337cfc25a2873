"""The volumes table: rows round-trip, empty or unreadable labels and options read as None."""

from __future__ import annotations

from pathlib import Path

from dockwright.metadata.db import MetadataDB
from dockwright.metadata.volumes import VolumeRecords, VolumeRow


def test_round_trip_and_delete(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    records = VolumeRecords(db)
    a = VolumeRow("a", "local", {"k": "v"}, {"type": "tmpfs", "device": "tmpfs"}, 1.5, False)
    b = VolumeRow("b", "local", None, None, 2.0, True)
    records.save(a)
    records.save(b)
    with db.tx() as c:
        c.execute("INSERT INTO volumes VALUES ('c', 'local', 'not json', '{}', 3, 0)")
    assert sorted(records.all(), key=lambda v: v.name) == [a, b, VolumeRow("c", "local", None, None, 3.0, False)]
    records.delete("a")
    assert sorted(v.name for v in VolumeRecords(db).all()) == ["b", "c"]
