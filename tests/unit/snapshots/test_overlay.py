"""Tests of dockwright.snapshots (the overlay snapshotter and mounting) and of
dockwright.layers.apply.ensure_chain, with real overlay mounts of the layers dockerd 20.10 saved."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockwright.errors import (
    AlreadyExists,
    Conflict,
    DataCorrupted,
    InvalidArgument,
    NotFound,
)
from dockwright.layers.apply import ensure_chain, remove_stale_extractions
from dockwright.oci.digest import chain_ids
from dockwright.snapshots import (
    PAGE_SIZE,
    Kind,
    Mount,
    OverlaySnapshotter,
    is_mountpoint,
    mount_all,
    unmount,
)

from conftest import FIXTURES, overlay_or_skip

SAVE_WHITEOUTS = FIXTURES / "dockerd-20.10-save-whiteouts.tar"


# ---------------------------------------------------------------------------------------- helpers


def fixture_layers() -> list[bytes]:
    with tarfile.open(SAVE_WHITEOUTS) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        return [t.extractfile(name).read() for name in manifest[0]["Layers"]]  # type: ignore[union-attr]


def opener(blob: bytes, calls: list[int] | None = None) -> Callable[[], io.BytesIO]:
    def open_blob() -> io.BytesIO:
        if calls is not None:
            calls.append(1)
        return io.BytesIO(blob)

    return open_blob


def fixture_chain() -> list[tuple[str, Callable[[], io.BytesIO]]]:
    blobs = fixture_layers()
    cids = chain_ids(["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs])
    return [(c, opener(b)) for c, b in zip(cids, blobs, strict=True)]


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def chain_of(tars: list[bytes]) -> list[tuple[str, Callable[[], io.BytesIO]]]:
    cids = chain_ids(["sha256:" + hashlib.sha256(t).hexdigest() for t in tars])
    return [(c, opener(t)) for c, t in zip(cids, tars, strict=True)]


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


# ---------------------------------------------------------------------------------------- metadata


def test_prepare_commit_view_remove_lifecycle(sn: OverlaySnapshotter) -> None:
    m = sn.prepare("k1")
    assert m == [Mount("bind", str(sn.root / "1" / "fs"), ("rw", "rbind"))]
    assert sn.stat("k1").kind is Kind.ACTIVE
    assert sn.upper_dir("k1") == sn.root / "1" / "fs"
    (sn.upper_dir("k1") / "f").write_text("base")
    sn.commit("layer1", "k1")
    info = sn.stat("layer1")
    assert (info.name, info.kind, info.parent) == ("layer1", Kind.COMMITTED, None)
    with pytest.raises(NotFound):
        sn.stat("k1")
    assert not (sn.root / "1" / "work").exists()

    m = sn.prepare("k2", "layer1")
    assert len(m) == 1 and m[0].type == "overlay"
    opts = dict(o.split("=", 1) for o in m[0].options if "=" in o)
    assert opts["lowerdir"] == str(sn.root / "1" / "fs")
    assert opts["upperdir"] == str(sn.root / "2" / "fs")
    assert opts["workdir"] == str(sn.root / "2" / "work")
    assert sn.stat("k2").parent == "layer1"
    assert sn.lower_dirs("k2") == [sn.root / "1" / "fs"]
    sn.commit("layer2", "k2")

    # a view of one layer is a read-only bind mount; of two, an overlay without upper
    assert sn.view("v1", "layer1") == [Mount("bind", str(sn.root / "1" / "fs"), ("ro", "rbind"))]
    m = sn.view("v2", "layer2")
    assert m[0].type == "overlay"
    assert [o for o in m[0].options if o.startswith("lowerdir=")] == [
        f"lowerdir={sn.root / '2' / 'fs'}:{sn.root / '1' / 'fs'}"
    ]
    assert not any(o.startswith("upperdir=") for o in m[0].options)
    assert sn.view("v0") == [Mount("bind", str(sn.root / "5" / "fs"), ("ro", "rbind"))]
    assert sn.mounts("v2") == m
    assert sn.stat("v2").kind is Kind.VIEW

    assert [i.name for i in sn.walk()] == ["layer1", "layer2", "v1", "v2", "v0"]

    with pytest.raises(Conflict):
        sn.remove("layer1")  # layer2 and v1 are its children
    with pytest.raises(InvalidArgument):
        sn.commit("x", "v2")  # views cannot be committed
    with pytest.raises(InvalidArgument):
        sn.mounts("layer1")  # committed: no mounts
    for key in ("v0", "v1", "v2", "layer2", "layer1"):
        sn.remove(key)
    assert list(sn.walk()) == []
    assert sorted(p.name for p in sn.root.iterdir() if p.name.isdigit()) == []


def test_errors(sn: OverlaySnapshotter) -> None:
    sn.prepare("a")
    with pytest.raises(AlreadyExists):
        sn.prepare("a")
    with pytest.raises(NotFound):
        sn.prepare("b", "missing")
    with pytest.raises(InvalidArgument):
        sn.prepare("b", "a")  # parent not committed
    sn.commit("n", "a")
    sn.prepare("c", "n")
    with pytest.raises(AlreadyExists):
        sn.commit("n", "c")
    assert sn.stat("c").kind is Kind.ACTIVE  # still there after the failed commit
    with pytest.raises(NotFound):
        sn.remove("nope")
    with pytest.raises(InvalidArgument):
        sn.prepare("")


def test_upper_root_takes_parent_root_owner_and_mode(sn: OverlaySnapshotter) -> None:
    sn.prepare("a")
    os.chmod(sn.upper_dir("a"), 0o700)
    sn.commit("n", "a")
    sn.prepare("b", "n")
    assert os.stat(sn.upper_dir("b")).st_mode & 0o7777 == 0o700


def test_reopen_keeps_snapshots_and_removes_orphans(tmp_path: Path) -> None:
    s = OverlaySnapshotter(tmp_path / "snapshots")
    s.prepare("a")
    (s.upper_dir("a") / "f").write_text("x")
    s.commit("n", "a")
    s.close()
    (tmp_path / "snapshots" / "99" / "fs").mkdir(parents=True)  # a crash between mkdir and the row
    (tmp_path / "snapshots" / "rm-7").mkdir()
    s = OverlaySnapshotter(tmp_path / "snapshots")
    assert s.stat("n").kind is Kind.COMMITTED
    assert (s.upper_dir("n") / "f").read_text() == "x"
    assert not (tmp_path / "snapshots" / "99").exists()
    assert not (tmp_path / "snapshots" / "rm-7").exists()
    s.prepare("b", "n")
    assert s.upper_dir("b") == tmp_path / "snapshots" / "2" / "fs"
    s.close()


def test_usage(sn: OverlaySnapshotter) -> None:
    sn.prepare("a")
    up = sn.upper_dir("a")
    (up / "f").write_bytes(b"x" * 10_000)
    os.link(up / "f", up / "g")
    (up / "d").mkdir()
    os.symlink("f", up / "s")
    u = sn.usage("a")
    assert u.apparent_size == 10_001
    assert u.inodes == 4  # fs, f (twice), d, s
    assert u.size >= 10_000


def test_root_with_comma_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        OverlaySnapshotter(tmp_path / "a,b")


# ---------------------------------------------------------------------------------------- real mounts


def test_fixture_chain_merged_view(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    chain = fixture_chain()
    top = ensure_chain(sn, chain)
    assert top == chain[-1][0]
    assert [i.name for i in sn.walk()] == [c for c, _ in chain]

    mount_all(sn.prepare("container", top), mnt)
    assert is_mountpoint(mnt)
    assert (mnt / "data/a").read_text() == "changed\n"
    assert not (mnt / "data/c").exists()
    assert sorted(os.listdir(mnt / "data/sub")) == ["n"]
    assert (mnt / "bin/busybox").is_file()
    (mnt / "data/written").write_text("rw")
    unmount(mnt)
    assert not is_mountpoint(mnt)
    assert (sn.upper_dir("container") / "data/written").read_text() == "rw"

    # a read-only view of the middle layer: data/c and data/sub/b are there
    mount_all(sn.view("v", chain[1][0]), mnt)
    try:
        assert (mnt / "data/c").read_text() == "gone\n"
        assert sorted(os.listdir(mnt / "data/sub")) == ["b"]
        with pytest.raises(OSError) as exc:
            (mnt / "data/x").write_text("no")
        assert exc.value.errno == errno.EROFS
    finally:
        unmount(mnt)

    # a view of the bottom layer alone is a read-only bind mount
    mount_all(sn.view("v0", chain[0][0]), mnt)
    try:
        assert (mnt / "bin/busybox").is_file()
        assert not (mnt / "data").exists()
        with pytest.raises(OSError):
            (mnt / "x").write_text("no")
    finally:
        unmount(mnt)


def test_single_layer_container(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    top = ensure_chain(sn, chain_of([tar_of({"etc/os-release": b"ID=test\n"})]))
    mount_all(sn.prepare("c", top), mnt)
    try:
        assert (mnt / "etc/os-release").read_bytes() == b"ID=test\n"
        (mnt / "etc/os-release").write_text("changed")
    finally:
        unmount(mnt)
    assert (sn.upper_dir(top) / "etc/os-release").read_bytes() == b"ID=test\n"
    assert (sn.upper_dir("c") / "etc/os-release").read_text() == "changed"


def test_prepare_on_unpacked_chain_is_fast(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    chain = fixture_chain()
    ensure_chain(sn, chain)
    for i in range(5):
        start = time.perf_counter()
        top = ensure_chain(sn, chain)
        mounts = sn.prepare(f"c{i}", top)
        elapsed = time.perf_counter() - start
        assert elapsed < 0.05, elapsed
    mount_all(mounts, mnt)
    unmount(mnt)


def test_long_chain_mounts_with_relative_paths(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    n = 130
    tars = [tar_of({f"layer{i:03d}": str(i).encode()}) for i in range(n)]
    top = ensure_chain(sn, chain_of(tars), sync=False)
    mount_all(sn.prepare("c", top), mnt)
    try:
        assert (mnt / "layer000").read_text() == "0"
        assert (mnt / f"layer{n - 1:03d}").read_text() == str(n - 1)
        assert len([p for p in mnt.iterdir()]) == n
    finally:
        unmount(mnt)


def test_long_chain_mount_fallback_deep_root(tmp_path: Path, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    root = tmp_path / ("x" * 80) / "snapshots"
    s = OverlaySnapshotter(root)
    tars = [tar_of({f"f{i}": b"1"}) for i in range(110)]
    top = ensure_chain(s, chain_of(tars), sync=False)
    mounts = s.prepare("c", top)
    assert len(",".join(mounts[0].options)) > PAGE_SIZE
    mount_all(mounts, mnt)
    try:
        assert len(os.listdir(mnt)) == 110
        (mnt / "new").write_text("x")
    finally:
        unmount(mnt)
    assert (s.upper_dir("c") / "new").read_text() == "x"
    s.close()


def test_scratch_snapshot_is_a_writable_bind_mount(tmp_path: Path, sn: OverlaySnapshotter, mnt: Path) -> None:
    overlay_or_skip(tmp_path)
    mount_all(sn.prepare("scratch"), mnt)
    try:
        (mnt / "hello").write_text("world")
    finally:
        unmount(mnt)
    assert (sn.upper_dir("scratch") / "hello").read_text() == "world"
    sn.commit("base", "scratch")
    mount_all(sn.view("v", "base"), mnt)
    try:
        assert (mnt / "hello").read_text() == "world"
        with pytest.raises(OSError):
            (mnt / "x").write_text("ro")
    finally:
        unmount(mnt)


def test_unmount_of_nothing_is_fine(tmp_path: Path) -> None:
    unmount(tmp_path)


# ---------------------------------------------------------------------------------------- ensure_chain


def test_ensure_chain_unpacks_only_missing_layers(sn: OverlaySnapshotter) -> None:
    tars = [tar_of({"a": b"1"}), tar_of({"b": b"2"}), tar_of({"c": b"3"})]
    cids = chain_ids(["sha256:" + hashlib.sha256(t).hexdigest() for t in tars])
    calls: list[list[int]] = [[], [], []]
    layers = [(c, opener(t, calls[i])) for i, (c, t) in enumerate(zip(cids, tars, strict=True))]
    assert ensure_chain(sn, layers[:2]) == cids[1]
    assert [len(c) for c in calls] == [1, 1, 0]
    assert ensure_chain(sn, layers) == cids[2]
    assert [len(c) for c in calls] == [1, 1, 1]
    assert ensure_chain(sn, layers) == cids[2]
    assert [len(c) for c in calls] == [1, 1, 1]
    assert (sn.upper_dir(cids[2]) / "c").read_bytes() == b"3"
    assert sn.stat(cids[2]).parent == cids[1]
    with pytest.raises(InvalidArgument):
        ensure_chain(sn, [])


def test_ensure_chain_accepts_chunk_iterables(sn: OverlaySnapshotter) -> None:
    t = tar_of({"x": b"y"})
    cid = "sha256:" + hashlib.sha256(t).hexdigest()
    ensure_chain(sn, [(cid, lambda: iter([t[:100], t[100:]]))])
    assert (sn.upper_dir(cid) / "x").read_bytes() == b"y"


def test_ensure_chain_failure_leaves_nothing(sn: OverlaySnapshotter) -> None:
    good = tar_of({"a": b"1"})
    bad = tar_of({"b": b"2" * 5000})[:3000]  # truncated
    cids = chain_ids(["sha256:" + hashlib.sha256(good).hexdigest(), "sha256:" + "1" * 64])
    with pytest.raises(DataCorrupted):
        ensure_chain(sn, [(cids[0], opener(good)), (cids[1], opener(bad))])
    assert [i.name for i in sn.walk()] == [cids[0]]
    assert sorted(p.name for p in sn.root.iterdir() if p.name.isdigit()) == ["1"]


def test_remove_stale_extractions(sn: OverlaySnapshotter) -> None:
    sn.prepare("extract-123-1-abc sha256:" + "3" * 64)
    sn.prepare("container")
    assert remove_stale_extractions(sn) == 1
    assert [i.name for i in sn.walk()] == ["container"]


def test_ensure_chain_checks_the_chain_id(sn: OverlaySnapshotter) -> None:
    t = tar_of({"a": b"1"})
    with pytest.raises(DataCorrupted, match="chain ID"):
        ensure_chain(sn, [("sha256:" + "2" * 64, opener(t))])
    assert list(sn.walk()) == []


def test_ensure_chain_concurrent(sn: OverlaySnapshotter) -> None:
    tars = [tar_of({f"f{i}": os.urandom(100_000)}) for i in range(4)]
    cids = chain_ids(["sha256:" + hashlib.sha256(t).hexdigest() for t in tars])
    calls: list[int] = []
    layers = [(c, opener(t, calls)) for c, t in zip(cids, tars, strict=True)]
    errors: list[BaseException] = []
    results: list[str] = []

    def work() -> None:
        try:
            results.append(ensure_chain(sn, layers, sync=False))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [cids[-1]] * 8
    assert len(calls) == 4  # each layer unpacked once
    assert [i.name for i in sn.walk()] == cids
