"""COPY/ADD's helpers: heredoc files as BuildKit writes them, and ``--chown`` names looked up in the destination."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockwright.builder.addcopy import NoIgnore, resolve_chown, write_heredoc
from dockwright.dockerfile import Env, Heredoc
from dockwright.errors import InvalidArgument


def test_write_heredoc(tmp_path: Path) -> None:
    doc = Heredoc("EOF", True, True)
    doc.content = "\t\tline $X\n\t'$X'\n"
    path = write_heredoc(tmp_path / "d", doc, Env(["X=1"]))
    assert path == tmp_path / "d" / "EOF" and path.read_text() == "line 1\n'1'\n"
    assert os.stat(path).st_mode & 0o777 == 0o664
    raw = Heredoc("RAW", False, False)
    raw.content = "\t$X\n"
    assert write_heredoc(tmp_path / "r", raw, Env(["X=1"])).read_text() == "\t$X\n"


def test_resolve_chown(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    assert resolve_chown("", tmp_path) == (0, 0)
    assert resolve_chown("app", tmp_path) == (1000, 1000)
    assert resolve_chown("app:staff", tmp_path) == (1000, 50)
    assert resolve_chown("7:8", tmp_path) == (7, 8)
    with pytest.raises(InvalidArgument, match="can't find uid for user nobody: no such user: nobody"):
        resolve_chown("nobody", tmp_path)
    assert not NoIgnore().matches("anything")
