"""COPY/ADD into a rootfs directory (dockwright.builder.copy), on a plain directory standing in for the mount."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockwright.builder.copy import copy_sources, is_archive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="COPY sets owners: needs root")


def _ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "app" / "sub").mkdir(parents=True)
    (ctx / "app" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(ctx / "app" / "run.sh", 0o4755)
    (ctx / "app" / "sub" / "data").write_bytes(b"x" * 100_000)
    os.symlink("sub/data", ctx / "app" / "link")
    os.mkfifo(ctx / "app" / "fifo")
    os.chmod(ctx / "app" / "sub", 0o750)
    for p in (ctx / "app" / "sub" / "data", ctx / "app" / "sub", ctx / "app" / "run.sh"):
        os.utime(p, (1_600_000_000, 1_600_000_000))
    (ctx / "one.txt").write_text("one\n")
    return ctx


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.chmod(root / "etc", 0o711)
    os.chown(root / "etc", 0, 0)
    os.symlink("/etc", root / "abs")  # an absolute symlink of the image: resolved in the rootfs
    return root


def test_directory_contents_keep_modes_mtimes_and_get_the_owner(tmp_path: Path) -> None:
    ctx, root = _ctx(tmp_path), _rootfs(tmp_path)
    copy_sources([ctx / "app"], root, "/opt/app/", ["app/"], 1000, 1001, "", False)
    app = root / "opt" / "app"
    st = os.lstat(app)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1001, 0o755)  # made: owned by the user
    assert os.stat(root / "opt").st_uid == 0  # a parent made on the way stays root's
    data = os.lstat(app / "sub" / "data")
    assert (data.st_uid, data.st_gid, int(data.st_mtime)) == (1000, 1001, 1_600_000_000)
    assert (app / "sub" / "data").read_bytes() == b"x" * 100_000
    sub = os.lstat(app / "sub")
    assert (sub.st_mode & 0o7777, int(sub.st_mtime), sub.st_uid) == (0o750, 1_600_000_000, 1000)
    assert os.lstat(app / "run.sh").st_mode & 0o7777 == 0o755  # dockerd's chown drops set-user-ID
    assert os.readlink(app / "link") == "sub/data" and os.lstat(app / "link").st_uid == 1000
    assert (app / "fifo").is_fifo()


def test_existing_destination_directory_keeps_its_owner_and_mode(tmp_path: Path) -> None:
    ctx, root = _ctx(tmp_path), _rootfs(tmp_path)
    copy_sources([ctx / "app" / "sub"], root, "/etc", ["app/sub"], 1000, 1000, "", False)
    st = os.lstat(root / "etc")
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o711)
    assert os.lstat(root / "etc" / "data").st_uid == 1000


def test_file_destination_rules(tmp_path: Path) -> None:
    ctx, root = _ctx(tmp_path), _rootfs(tmp_path)
    copy_sources([ctx / "one.txt"], root, "/srv/renamed", ["one.txt"], 0, 0, "", False)
    assert (root / "srv" / "renamed").read_text() == "one\n"
    copy_sources([ctx / "one.txt"], root, "/srv/dir/", ["one.txt"], 0, 0, "", False)
    assert (root / "srv" / "dir" / "one.txt").is_file()
    copy_sources([ctx / "one.txt"], root, "/etc", ["one.txt"], 0, 0, "0640", False)  # an existing dir
    assert os.lstat(root / "etc" / "one.txt").st_mode & 0o777 == 0o640


def test_absolute_symlinks_resolve_inside_the_rootfs_and_links_are_replaced(tmp_path: Path) -> None:
    ctx, root = _ctx(tmp_path), _rootfs(tmp_path)
    copy_sources([ctx / "one.txt"], root, "/abs/", ["one.txt"], 0, 0, "", False)
    assert (root / "etc" / "one.txt").read_text() == "one\n"  # /abs -> /etc of the rootfs, not the host's
    os.symlink("/etc/passwd", root / "victim")
    copy_sources([ctx / "one.txt"], root, "/victim", ["one.txt"], 0, 0, "", False)
    assert not os.path.islink(root / "victim") and (root / "victim").read_text() == "one\n"


def test_add_unpacks_local_archives_only(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ti = tarfile.TarInfo("inner/file")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    arch = tmp_path / "a.tar.gz"
    arch.write_bytes(buf.getvalue())
    assert is_archive(arch) and not is_archive(_ctx(tmp_path) / "one.txt")
    copy_sources([arch], root, "/x/", ["a.tar.gz"], 0, 0, "", True)
    assert (root / "x" / "inner" / "file").read_bytes() == b"hi"
    copy_sources([arch], root, "/y/", ["a.tar.gz"], 0, 0, "", False)  # COPY: as it is
    assert (root / "y" / "a.tar.gz").read_bytes() == buf.getvalue()
