"""Archive names: cleaned relative paths, blob paths, JSON documents."""

from __future__ import annotations

import pytest

from dockwright.archive.paths import blob_name, clean_path, components, parse_object
from dockwright.archive.results import ArchiveError


def test_clean_path() -> None:
    assert clean_path("a/./b//c/../d") == ["a", "b", "d"]
    assert clean_path("a/../..") is None


def test_components_errors() -> None:
    assert components("x/y", "abs", "out") == ["x", "y"]
    with pytest.raises(ArchiveError, match="^abs$"):
        components("/x", "abs", "out")
    with pytest.raises(ArchiveError, match="^out$"):
        components("../x", "abs", "out")


def test_blob_name_and_parse_object() -> None:
    assert blob_name("sha256:" + "a" * 64, "w") == "blobs/sha256/" + "a" * 64
    with pytest.raises(ArchiveError, match="invalid archive: w: unsupported or invalid digest 'x'"):
        blob_name("x", "w")
    with pytest.raises(ArchiveError, match="^invalid archive: m.json: not a JSON object$"):
        parse_object(b"1", "m.json")
