"""The containers table: an older data root's table gains its columns; rows round-trip; GC roots."""

from __future__ import annotations

import json
from pathlib import Path

from dockwright.metadata.containers import ContainerRecords, ContainerRow, container_roots
from dockwright.metadata.db import MetadataDB

OLD_SCHEMA = """
CREATE TABLE containers (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, image_id TEXT NOT NULL, image_ref TEXT NOT NULL,
    created TEXT NOT NULL, config TEXT NOT NULL, host_config TEXT NOT NULL, state TEXT NOT NULL
);
"""


def _row(cid: str, state: dict[str, object], name: str = "") -> ContainerRow:
    return ContainerRow(cid, name or f"n{cid}", "sha256:img", "img:1", "2024-01-01T00:00:00Z", "{}", "{}",
                        json.dumps(state), "", "")


def test_old_table_gains_network_and_mounts(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    db.executescript(OLD_SCHEMA)
    with db.tx() as c:
        c.execute("INSERT INTO containers VALUES ('a', 'old', 'sha256:i', 'i', 't', '{}', '{}', '{}')")
    records = ContainerRecords(db)
    assert records.all() == [ContainerRow("a", "old", "sha256:i", "i", "t", "{}", "{}", "{}", "", "")]
    ContainerRecords(db)  # idempotent


def test_save_replace_delete(tmp_path: Path) -> None:
    records = ContainerRecords(MetadataDB(tmp_path / "metadata.db"))
    records.save(_row("a", {}))
    records.save(_row("a", {"Running": True}))
    assert [r.state for r in records.all()] == ['{"Running": true}']
    records.delete("a")
    records.delete("a")
    assert records.all() == []


def test_container_roots(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    assert container_roots(db) == []  # no table yet
    records = ContainerRecords(db)
    records.save(_row("a", {"Running": True, "Pid": 42}))
    records.save(ContainerRow("b", "nb", "sha256:img", "i", "t", "{}", "{}", "not json", "", ""))
    roots = {r.id: r for r in container_roots(db)}
    assert roots["a"].running and roots["a"].pid == 42 and roots["a"].image_id == "sha256:img"
    assert not roots["b"].running and roots["b"].pid == 0
