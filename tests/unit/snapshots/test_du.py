"""walk_tree: every entry once, directories walked when the visitor asks."""

from __future__ import annotations

import os
from pathlib import Path

from dockwright.snapshots.du import walk_tree


def test_walk_tree(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"12345")
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "g").write_bytes(b"x")
    seen: list[str] = []

    def visit(entry: os.DirEntry[str], st: os.stat_result) -> bool:
        seen.append(os.path.relpath(entry.path, tmp_path))
        return entry.name != "skip"

    walk_tree(os.fspath(tmp_path), visit)
    assert sorted(seen) == ["a", "a/b", "a/b/f", "skip"]
    walk_tree(os.fspath(tmp_path / "missing"), visit)
