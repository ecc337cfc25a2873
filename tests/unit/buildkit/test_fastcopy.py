"""COPY written straight into a snapshot's upper directory: the context's files hard-linked, directories as overlay
would make them, and every case the image below stands in the way answered False with nothing written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockwright.buildkit.fastcopy import direct_copy


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    if os.geteuid() != 0:
        pytest.skip("the copy keeps root ownership: needs root")
    ctx, upper, below = tmp_path / "ctx", tmp_path / "upper", tmp_path / "below"
    (ctx / "src" / "d").mkdir(parents=True)
    (ctx / "src" / "a.txt").write_text("a\n")
    (ctx / "src" / "d" / "b.txt").write_text("b\n")
    os.chmod(ctx / "src" / "d", 0o750)
    os.utime(ctx / "src" / "d", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    (ctx / "src" / "link").symlink_to("a.txt")
    upper.mkdir()
    (below / "data").mkdir(parents=True)
    os.chmod(below / "data", 0o711)
    return ctx, upper, below


def test_files_are_linked_and_directories_made_as_overlay_would(dirs: tuple[Path, Path, Path]) -> None:
    ctx, upper, below = dirs
    assert direct_copy(upper, below, [ctx / "src"], "/data/app/")
    assert stat.S_IMODE(os.lstat(upper / "data").st_mode) == 0o711  # copied up: the image's mode
    assert stat.S_IMODE(os.lstat(upper / "data" / "app").st_mode) == 0o755  # made: 0755
    assert os.lstat(upper / "data" / "app" / "a.txt").st_ino == os.lstat(ctx / "src" / "a.txt").st_ino
    d = os.lstat(upper / "data" / "app" / "d")
    assert stat.S_IMODE(d.st_mode) == 0o750 and d.st_mtime_ns == 1_600_000_000_000_000_000
    assert os.readlink(upper / "data" / "app" / "link") == "a.txt"


@pytest.mark.parametrize("obstacle", ["symlink_on_the_way", "file_where_a_dir_goes", "dir_where_a_file_goes",
                                      "not_root_owned"])
def test_what_stands_in_the_way_falls_back_before_writing(dirs: tuple[Path, Path, Path], obstacle: str) -> None:
    ctx, upper, below = dirs
    if obstacle == "symlink_on_the_way":
        (below / "data" / "app").symlink_to("/etc")
    elif obstacle == "file_where_a_dir_goes":
        (below / "data" / "app").mkdir()
        (below / "data" / "app" / "d").write_text("a file in the image\n")
    elif obstacle == "dir_where_a_file_goes":
        (below / "data" / "app" / "a.txt").mkdir(parents=True)
    else:
        os.chown(ctx / "src" / "a.txt", 1000, 1000)
    assert not direct_copy(upper, below, [ctx / "src"], "/data/app/")
    assert os.listdir(upper) == []
