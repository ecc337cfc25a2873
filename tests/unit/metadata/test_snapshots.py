"""The snapshotter's table: insert, chain, commit, children, delete; taken keys are AlreadyExists."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockwright.errors import AlreadyExists
from dockwright.metadata.snapshots import SnapshotRow, SnapshotsDB


def test_snapshot_rows(tmp_path: Path) -> None:
    db = SnapshotsDB(tmp_path / "metadata.db")
    with db.tx():
        a = db.insert("a", None, "active", 1.0)
    db.commit(a, "A", 2.0)
    with db.tx():
        b = db.insert("b", a, "view", 3.0)
    assert db.get("A") == SnapshotRow(a, "A", None, "committed", 1.0, 2.0)
    assert db.key_of(b) == "b" and db.key_of(99) is None
    assert db.chain(b) == [b, a]
    assert db.has_children(a) and not db.has_children(b)
    with pytest.raises(AlreadyExists), db.tx():
        db.insert("b", None, "active", 4.0)
    with pytest.raises(AlreadyExists):
        db.commit(b, "A", 4.0)
    assert db.ids() == {a, b}
    db.delete(b)
    assert [r.key for r in db.all()] == ["A"]
    db.close()
    assert [r.key for r in SnapshotsDB(tmp_path / "metadata.db").all()] == ["A"]
