"""Tests of dockwright.layers.diff: layers made from real overlay upper directories (containers on the layers
dockerd 20.10 saved), applied again and compared, determinism, header formats and the changes list."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockwright.content.store import ContentStore
from dockwright.layers.apply import apply_layer, ensure_chain
from dockwright.layers.diff import (
    CHANGE_ADD,
    CHANGE_DELETE,
    CHANGE_MODIFY,
    changes,
    write_layer_from_upper,
)
from dockwright.oci.digest import chain_ids, sha256_digest
from dockwright.snapshots import OverlaySnapshotter, mount_all, unmount
from dockwright.tar.reader import TarInspector

from conftest import FIXTURES, overlay_or_skip

SAVE_WHITEOUTS = FIXTURES / "dockerd-20.10-save-whiteouts.tar"
IS_ROOT = os.geteuid() == 0


# ---------------------------------------------------------------------------------------- helpers


def fixture_chain() -> list[tuple[str, Callable[[], io.BytesIO]]]:
    with tarfile.open(SAVE_WHITEOUTS) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        blobs = [t.extractfile(name).read() for name in manifest[0]["Layers"]]  # type: ignore[union-attr]
    cids = chain_ids(["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs])
    return [(c, (lambda b=b: io.BytesIO(b))) for c, b in zip(cids, blobs, strict=True)]


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about a file tree, except inode numbers and times finer than a second."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                what: object = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = st.st_rdev
            else:
                what = None
            xattrs = sorted((n, os.getxattr(p, n, follow_symlinks=False))
                            for n in os.listxattr(p, follow_symlinks=False) if n.startswith("user."))
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime), what, xattrs,
                                             st.st_nlink if not stat.S_ISDIR(st.st_mode) else None)
    return out


def untar(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tf:
        return tf.getmembers()


@pytest.fixture
def sn(tmp_path: Path) -> Iterator[OverlaySnapshotter]:
    s = OverlaySnapshotter(tmp_path / "snapshots")
    yield s
    s.close()


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    m = tmp_path / "mnt"
    m.mkdir()
    yield m
    unmount(m, detach=True)


def container(sn: OverlaySnapshotter, mnt: Path, key: str = "ctr") -> str:
    top = ensure_chain(sn, fixture_chain(), sync=False)
    mount_all(sn.prepare(key, top), mnt)
    return top


def make_changes(m: Path) -> None:
    (m / "data/new").write_text("new\n")
    os.setxattr(m / "data/new", "user.note", b"kept")
    os.link(m / "data/new", m / "data/new-link")
    (m / "data/a").write_text("modified\n")  # modify a lower file
    os.unlink(m / "bin/rm")  # delete a lower symlink
    shutil.rmtree(m / "data/sub")  # replace a lower directory
    (m / "data/sub").mkdir(mode=0o750)
    (m / "data/sub/z").write_text("z")
    os.unlink(m / "bin/cp")  # a lower file becomes a directory
    (m / "bin/cp").mkdir()
    (m / "bin/cp/inside").write_bytes(b"\0" * 70_000)
    os.chmod(m / "bin/busybox", 0o4755)  # metadata-only change of a lower file
    os.chown(m / "bin/touch", 12, 34, follow_symlinks=False)
    os.symlink("../data/a", m / "bin/to-a")
    os.mkfifo(m / "data/fifo", 0o640)
    deep = m / ("long-" * 30) / ("name-" * 30)
    deep.mkdir(parents=True)
    (deep / ("f" * 120)).write_text("long")
    (m / "ünïcödé").write_text("☃")
    os.utime(m / "data/new", (1_234_567_890, 1_234_567_890))


# ---------------------------------------------------------------------------------------- round trip


def test_round_trip_through_a_layer(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    top = container(sn, mnt)
    make_changes(mnt)
    unmount(mnt)
    mount_all(sn.mounts("ctr"), mnt)  # the view is what the container left behind
    expected = tree(mnt)
    unmount(mnt)

    store = ContentStore(tmp_path / "content")
    w = store.writer()
    res = write_layer_from_upper(sn.upper_dir("ctr"), w)
    assert w.commit(res.digest, res.size) == res.digest
    blob = store.read(res.digest)
    assert res.size == len(blob)
    tar = gzip.decompress(blob)
    assert res.diff_id == sha256_digest(tar)
    assert res.tar_size == len(tar)
    summary = TarInspector()
    summary.feed(tar)
    s = summary.close()
    assert (s.entries, s.diff_size) == (res.entries, res.diff_size)

    names = {m.name: m for m in untar(blob)}
    assert "bin/.wh.rm" in names and names["bin/.wh.rm"].size == 0 and names["bin/.wh.rm"].mode == 0o600
    assert "data/sub/.wh..wh..opq" in names and names["data/sub/.wh..wh..opq"].mode == 0o750
    assert names["data/new-link"].type == tarfile.LNKTYPE and names["data/new-link"].linkname == "data/new"
    assert names["data/new"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    assert names["data/new"].mtime == 1_234_567_890
    assert names["bin/busybox"].mode == 0o104755  # with its type bits, as Go writes it
    assert (names["bin/touch"].uid, names["bin/touch"].gid, names["bin/touch"].uname) == (12, 34, "")
    assert not any("trusted.overlay" in k for m in names.values() for k in m.pax_headers)

    # apply the layer on top of the same lower, in a fresh snapshot, and compare what a container sees
    new_chain = sha256_digest(f"{top} {res.diff_id}".encode())
    sn.prepare("re", top)
    applied = apply_layer(iter([blob]), sn.upper_dir("re"), expected_diff_id=res.diff_id)
    assert applied.diff_size == res.diff_size
    sn.commit(new_chain, "re")
    mount_all(sn.view("view", new_chain), mnt)
    try:
        got = tree(mnt)
    finally:
        unmount(mnt)
    assert got.keys() == expected.keys()
    for path in expected:
        assert got[path] == expected[path], path
    assert (got["data/a"][4]) == hashlib.sha256(b"modified\n").hexdigest()
    assert "data/sub/n" not in got and "data/c" not in got and "bin/rm" not in got


def test_same_upper_gives_the_same_layer(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    container(sn, mnt)
    make_changes(mnt)
    unmount(mnt)
    a, b = io.BytesIO(), io.BytesIO()
    ra = write_layer_from_upper(sn.upper_dir("ctr"), a)
    rb = write_layer_from_upper(sn.upper_dir("ctr"), b)
    assert ra == rb
    assert a.getvalue() == b.getvalue()
    assert ra.digest == sha256_digest(a.getvalue())


def test_mtime_clamp(tmp_path: Path) -> None:
    up = tmp_path / "up"
    (up / "d").mkdir(parents=True)
    (up / "d/f").write_text("x")
    (up / "old").write_text("o")
    os.utime(up / "old", (100, 100))
    out = io.BytesIO()
    res = write_layer_from_upper(up, out, mtime_clamp=1000.7)
    members = {m.name: m for m in untar(out.getvalue())}
    assert members["d"].mtime == 1000 and members["d/f"].mtime == 1000
    assert members["old"].mtime == 100
    # the clamp makes the layer independent of when the files were written
    os.utime(up / "d/f", (2000, 5000))
    assert write_layer_from_upper(up, io.BytesIO(), mtime_clamp=1000).diff_id == res.diff_id


def test_plain_directory_layer_and_headers(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    (up / "b").write_text("b")
    (up / "a").mkdir()
    (up / "a/z").write_text("z")
    (up / "a/y").write_text("y")
    long_dir = up / ("p" * 90) / ("q" * 90)
    long_dir.mkdir(parents=True)
    (long_dir / "r").write_text("split")  # fits a ustar prefix/name split
    (up / ("s" * 150)).write_text("pax")  # cannot be split: PAX path record
    os.symlink("t" * 120, up / "l")  # long link target: PAX linkpath
    out = io.BytesIO()
    res = write_layer_from_upper(up, out)
    tar = gzip.decompress(out.getvalue())
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        members = tf.getmembers()
        names = [m.name for m in members]
        assert names == ["a", "a/y", "a/z", "b", "l", "p" * 90, "p" * 90 + "/" + "q" * 90,
                         "p" * 90 + "/" + "q" * 90 + "/r", "s" * 150]
        assert tf.extractfile("p" * 90 + "/" + "q" * 90 + "/r").read() == b"split"  # type: ignore[union-attr]
        assert tf.extractfile("s" * 150).read() == b"pax"  # type: ignore[union-attr]
        assert members[4].linkname == "t" * 120
        assert all(m.uname == "" and m.gname == "" for m in members)
    # the raw header of "a/": ustar magic, the mode with its type bits, a directory name with "/"
    assert tar[0:2] == b"a/" and tar[257:265] == b"ustar\x0000"
    assert tar[100:108] == b"0040755\x00"
    # a split name: prefix field used, no PAX header before it
    idx = tar.find(b"q" * 90 + b"/r\x00")
    assert idx > 0 and tar[idx + 345 : idx + 345 + 91] == b"p" * 90 + b"\0"  # the prefix holds the directory
    assert tar.count(b"PaxHeaders.0/") == 2  # the long name and the long link
    assert tar.endswith(bytes(1024)) and len(tar) % 512 == 0
    assert res.entries == 9
    assert res.diff_size == 1 + 1 + 1 + 5 + 3 + 120


def test_whiteouts_and_opaque_dirs_are_converted(tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip("whiteouts and trusted.* xattrs need root")
    up = tmp_path / "up"
    (up / "d/opaque").mkdir(parents=True)
    os.setxattr(up / "d/opaque", "trusted.overlay.opaque", b"y")
    os.setxattr(up / "d/opaque", "trusted.overlay.origin", b"junk")
    (up / "d/useropaque").mkdir()
    os.setxattr(up / "d/useropaque", "user.overlay.opaque", b"y")
    os.mknod(up / "d/gone", stat.S_IFCHR, os.makedev(0, 0))
    os.link(up / "d/gone", up / "d/gone2")  # overlayfs may share one whiteout inode
    os.mknod(up / "d/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(up / "d", "security.capability", b"\x01\x00\x00\x02" + bytes(16))
    out = io.BytesIO()
    write_layer_from_upper(up, out)
    members = {m.name: m for m in untar(out.getvalue())}
    assert list(members) == ["d", "d/.wh.gone", "d/.wh.gone2", "d/null", "d/opaque", "d/opaque/.wh..wh..opq",
                             "d/useropaque", "d/useropaque/.wh..wh..opq"]
    assert members["d/.wh.gone"].isreg() and members["d/.wh.gone"].size == 0
    assert members["d/null"].ischr() and (members["d/null"].devmajor, members["d/null"].devminor) == (1, 3)
    assert members["d/opaque/.wh..wh..opq"].mtime == 0
    assert not members["d/opaque"].pax_headers
    assert not members["d/useropaque"].pax_headers
    assert "SCHILY.xattr.security.capability" in members["d"].pax_headers
    # applied again, the layer holds the same whiteouts
    back = tmp_path / "back"
    back.mkdir()
    apply_layer(iter([out.getvalue()]), back)
    assert os.lstat(back / "d/gone").st_rdev == 0 and stat.S_ISCHR(os.lstat(back / "d/gone").st_mode)
    assert os.getxattr(back / "d/opaque", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(back / "d/useropaque", "trusted.overlay.opaque") == b"y"


# ---------------------------------------------------------------------------------------- changes


def test_changes_like_dockerd(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    container(sn, mnt)
    (mnt / "data/a").write_text("modified\n")
    (mnt / "data/new").write_text("new\n")
    os.unlink(mnt / "bin/rm")
    shutil.rmtree(mnt / "data/sub")
    (mnt / "data/sub").mkdir()
    (mnt / "data/sub/z").write_text("z")
    (mnt / "fresh/dir").mkdir(parents=True)
    unmount(mnt)
    got = changes(sn.upper_dir("ctr"), sn.lower_dirs("ctr"))
    assert got == [
        (CHANGE_MODIFY, "/bin"),
        (CHANGE_DELETE, "/bin/rm"),
        (CHANGE_MODIFY, "/data"),
        (CHANGE_MODIFY, "/data/a"),
        (CHANGE_ADD, "/data/new"),
        (CHANGE_DELETE, "/data/sub"),
        (CHANGE_ADD, "/data/sub/z"),
        (CHANGE_ADD, "/fresh"),
        (CHANGE_ADD, "/fresh/dir"),
    ]


def test_changes_skip_unchanged_copied_up_dirs(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    container(sn, mnt)
    with open(mnt / "data/a", "r+") as f:  # copy-up keeps the parent's times
        f.write("C")
    unmount(mnt)
    assert (sn.upper_dir("ctr") / "data").is_dir()
    assert changes(sn.upper_dir("ctr"), sn.lower_dirs("ctr")) == [(CHANGE_MODIFY, "/data/a")]


def test_changes_of_an_untouched_container(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    container(sn, mnt)
    unmount(mnt)
    assert changes(sn.upper_dir("ctr"), sn.lower_dirs("ctr")) == []
    empty = write_layer_from_upper(sn.upper_dir("ctr"), io.BytesIO())
    assert empty.diff_id == sha256_digest(bytes(1024))
    assert (empty.entries, empty.diff_size) == (0, 0)
