"""Tests of dockwright.layers.apply: real tars made with Python's tarfile, extracted into tmp_path, the
layers dockerd 20.10 saved (merged with a real overlay mount), and hostile layers that must stay confined."""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import lzma
import os
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from dockwright.errors import DataCorrupted
from dockwright.layers.apply import ApplyResult, apply_layer
from dockwright.layers.compression import gzip_compressor
from dockwright.tar.reader import TarInspector

from conftest import FIXTURES, overlay_or_skip

SAVE_WHITEOUTS = FIXTURES / "dockerd-20.10-save-whiteouts.tar"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (device nodes, ownership, trusted.* xattrs)")


# ---------------------------------------------------------------------------------------- helpers


def make_tar(*entries: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def reg(name: str, data: bytes = b"", **kw: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 1_600_000_000
    for k, v in kw.items():
        setattr(info, k, v)
    return info, data


def dir_(name: str, **kw: object) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 1_600_000_000
    for k, v in kw.items():
        setattr(info, k, v)
    return info, None


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE, **kw: object) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    info.mtime = 1_600_000_000
    for k, v in kw.items():
        setattr(info, k, v)
    return info, None


def node(name: str, kind: bytes, major: int = 0, minor: int = 0, **kw: object) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = major, minor
    info.mode = 0o600
    info.mtime = 1_600_000_000
    for k, v in kw.items():
        setattr(info, k, v)
    return info, None


def gz(data: bytes) -> bytes:
    c = gzip_compressor(1)
    return c.compress(data) + c.flush()


def chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def apply(data: bytes, target: Path, **kw: object) -> ApplyResult:
    target.mkdir(exist_ok=True)
    return apply_layer(chunks(data), target, **kw)  # type: ignore[arg-type]


def fixture_layers() -> list[bytes]:
    with tarfile.open(SAVE_WHITEOUTS) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        return [t.extractfile(name).read() for name in manifest[0]["Layers"]]  # type: ignore[union-attr]


def is_whiteout(p: Path) -> bool:
    st = os.lstat(p)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# ---------------------------------------------------------------------------------------- basics


def test_regular_files_dirs_and_diff_id(tmp_path: Path) -> None:
    data = make_tar(dir_("etc"), reg("etc/hosts", b"127.0.0.1 localhost\n"), reg("bin/sh", b"x" * 100_000, mode=0o755))
    res = apply(data, tmp_path / "t")
    assert res.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert res.size == len(data)
    assert res.entries == 3
    assert res.diff_size == TarInspector().close().diff_size + 20 + 100_000
    assert (tmp_path / "t/etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert (tmp_path / "t/bin/sh").read_bytes() == b"x" * 100_000
    assert stat.S_IMODE(os.stat(tmp_path / "t/bin/sh").st_mode) == 0o755
    # implied directory
    st = os.stat(tmp_path / "t/bin")
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert os.stat(tmp_path / "t/etc/hosts").st_mtime == 1_600_000_000


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd", "bzip2", "xz"])
def test_compressions_detected(tmp_path: Path, kind: str) -> None:
    data = make_tar(reg("a", b"hello"))
    blob = {
        "none": lambda d: d,
        "gzip": gz,
        "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
        "bzip2": bz2.compress,
        "xz": lzma.compress,
    }[kind](data)
    res = apply(blob, tmp_path / "t")
    assert res.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (tmp_path / "t/a").read_bytes() == b"hello"


def test_tiny_chunks_and_trailing_data_hashed(tmp_path: Path) -> None:
    data = make_tar(reg("a", b"1" * 3000), reg("b", b"2")) + bytes(4096)
    (tmp_path / "t").mkdir()
    res = apply_layer(chunks(gz(data), 7), tmp_path / "t")
    assert res.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert res.size == len(data)
    assert (tmp_path / "t/a").read_bytes() == b"1" * 3000


def test_empty_stream_is_an_empty_layer(tmp_path: Path) -> None:
    res = apply(b"", tmp_path / "t")
    assert res.diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert list((tmp_path / "t").iterdir()) == []


def test_symlinks_hardlinks_and_times(tmp_path: Path) -> None:
    data = make_tar(
        dir_("d", mtime=1_500_000_000),
        reg("d/f", b"content", mtime=1_500_000_001),
        link("d/s", "f", mtime=1_500_000_002),
        link("d/abs", "/etc/passwd"),
        link("d/h", "d/f", tarfile.LNKTYPE),
        link("d/hs", "/d/s", tarfile.LNKTYPE),  # a hardlink to a symlink links the symlink itself
    )
    t = tmp_path / "t"
    apply(data, t)
    assert os.readlink(t / "d/s") == "f"
    assert os.readlink(t / "d/abs") == "/etc/passwd"
    assert os.lstat(t / "d/h").st_ino == os.lstat(t / "d/f").st_ino
    assert os.lstat(t / "d/hs").st_ino == os.lstat(t / "d/s").st_ino
    assert os.lstat(t / "d/f").st_nlink == 2
    assert os.lstat(t / "d/s").st_mtime == 1_500_000_002
    # directory mtime set after its children were made
    assert os.stat(t / "d").st_mtime == 1_500_000_000


def test_pax_nanosecond_mtime(tmp_path: Path) -> None:
    info, body = reg("f", b"x")
    info.pax_headers = {"mtime": "1600000000.123456789", "atime": "1700000000.5"}
    apply(make_tar((info, body)), tmp_path / "t")
    st = os.stat(tmp_path / "t/f")
    assert st.st_mtime_ns == 1_600_000_000_123_456_789
    assert st.st_atime_ns == 1_700_000_000_500_000_000


def test_times_before_1970_become_the_epoch(tmp_path: Path) -> None:
    apply(make_tar(reg("f", b"x", mtime=-5)), tmp_path / "t")
    assert os.stat(tmp_path / "t/f").st_mtime == 0


@needs_root
def test_ownership_modes_setuid_and_devices(tmp_path: Path) -> None:
    data = make_tar(
        dir_("d", uid=1000, gid=1001, mode=0o1777),
        reg("d/suid", b"#!", uid=1000, gid=1001, mode=0o4755),
        reg("d/sgid", b"#!", uid=0, gid=50, mode=0o2711),
        link("d/sl", "suid", uid=33, gid=34),
        node("dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666),
        node("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660, gid=6),
        node("run/fifo", tarfile.FIFOTYPE, mode=0o620, uid=5),
    )
    t = tmp_path / "t"
    apply(data, t)
    st = os.lstat(t / "d")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o1777)
    st = os.lstat(t / "d/suid")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o4755)
    assert stat.S_IMODE(os.lstat(t / "d/sgid").st_mode) == 0o2711
    st = os.lstat(t / "d/sl")
    assert (st.st_uid, st.st_gid) == (33, 34)
    st = os.lstat(t / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(t / "dev/loop0")
    assert stat.S_ISBLK(st.st_mode) and st.st_gid == 6
    st = os.lstat(t / "run/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620 and st.st_uid == 5


@needs_root
def test_xattrs_from_pax_records(tmp_path: Path) -> None:
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    info, body = reg("bin/ping", b"elf", mode=0o755)
    info.pax_headers = {
        "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
        "SCHILY.xattr.user.note": "hello",
        "SCHILY.xattr.trusted.overlay.opaque": "y",  # overlayfs' own: never taken from a layer
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",
    }
    dinfo, _ = dir_("dir")
    dinfo.pax_headers = {"SCHILY.xattr.trusted.x": "1"}
    apply(make_tar((dinfo, None), (info, body)), tmp_path / "t")
    p = tmp_path / "t/bin/ping"
    assert os.getxattr(p, "security.capability") == cap
    assert os.getxattr(p, "user.note") == b"hello"
    assert "trusted.overlay.opaque" not in os.listxattr(p)
    assert "trusted.overlay.redirect" not in os.listxattr(p)
    assert os.getxattr(tmp_path / "t/dir", "trusted.x") == b"1"


# ---------------------------------------------------------------------------------------- replacement


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    data = make_tar(
        reg("a", b"first"),
        reg("a", b"second"),
        dir_("d"),
        reg("d/x", b"x"),
        reg("d", b"now a file"),  # a file replaces a directory and everything under it
        reg("f", b"file"),
        dir_("f"),  # a directory replaces a file
        reg("f/y", b"y"),
        dir_("m", mode=0o700),
        reg("m/keep", b"k"),
        dir_("m", mode=0o755),  # directories merge
        link("s", "a"),
        reg("s", b"not a link"),
    )
    t = tmp_path / "t"
    apply(data, t)
    assert (t / "a").read_bytes() == b"second"
    assert (t / "d").read_bytes() == b"now a file"
    assert (t / "f/y").read_bytes() == b"y"
    assert (t / "m/keep").read_bytes() == b"k"
    assert stat.S_IMODE(os.stat(t / "m").st_mode) == 0o755
    assert not (t / "s").is_symlink() and (t / "s").read_bytes() == b"not a link"


def test_root_entry_is_ignored_and_absolute_names_made_relative(tmp_path: Path) -> None:
    t = tmp_path / "t"
    t.mkdir(mode=0o755)
    data = make_tar(dir_("./", mode=0o700), reg("/abs", b"a"), reg("/../../up", b"u"), reg("./x/../y", b"y"))
    apply(data, t)
    assert stat.S_IMODE(os.stat(t).st_mode) == 0o755
    assert (t / "abs").read_bytes() == b"a"
    assert (t / "up").read_bytes() == b"u"
    assert (t / "y").read_bytes() == b"y"


def test_file_replacing_the_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataCorrupted, match="root"):
        apply(make_tar(reg("./", b"x")), tmp_path / "t")


# ---------------------------------------------------------------------------------------- whiteouts


@needs_root
def test_whiteouts_become_char_devices_and_opaque_xattrs(tmp_path: Path) -> None:
    data = make_tar(
        dir_("data"),
        reg("data/.wh.c"),
        reg("data/gone", b"x"),
        reg("data/.wh.gone"),  # the whiteout removes what this layer put there
        dir_("data/sub"),
        reg("data/sub/.wh..wh..opq"),
        reg("data/sub/n", b"new"),
        reg("deep/er/.wh.x"),  # implied parents are made
    )
    t = tmp_path / "t"
    res = apply(data, t)
    assert is_whiteout(t / "data/c")
    assert is_whiteout(t / "data/gone")
    assert is_whiteout(t / "deep/er/x")
    assert not (t / "data/.wh.c").exists()
    assert os.getxattr(t / "data/sub", "trusted.overlay.opaque") == b"y"
    assert not (t / "data/sub/.wh..wh..opq").exists()
    assert (t / "data/sub/n").read_bytes() == b"new"
    assert res.diff_size == 3


@needs_root
def test_fixture_layers_merge_like_dockerd(tmp_path: Path) -> None:
    """The three layers of fixture/whiteouts:1, each applied to its own directory, then overlaid."""
    overlay_or_skip(tmp_path)
    layers = fixture_layers()
    dirs = []
    for i, blob in enumerate(layers):
        d = tmp_path / f"l{i}"
        res = apply(blob, d)
        assert res.diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
        dirs.append(d)
    assert is_whiteout(dirs[2] / "data/c")
    assert os.getxattr(dirs[2] / "data/sub", "trusted.overlay.opaque") == b"y"
    merged = tmp_path / "merged"
    merged.mkdir()
    lower = ":".join(str(d) for d in reversed(dirs))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}", str(merged)], check=True)
    try:
        assert (merged / "data/a").read_text() == "changed\n"
        assert not (merged / "data/c").exists()
        assert sorted(os.listdir(merged / "data/sub")) == ["n"]
        assert (merged / "data/sub/n").read_text() == "new\n"
        assert (merged / "bin/busybox").is_file()
        assert os.readlink(merged / "bin/sh") == "busybox"
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_fixture_diff_sizes_match_dockerd(tmp_path: Path) -> None:
    inspect = json.loads((FIXTURES / "dockerd-20.10-inspect-whiteouts.json").read_text())[0]
    total = 0
    for i, blob in enumerate(fixture_layers()):
        total += apply(blob, tmp_path / f"l{i}").diff_size
    assert total == inspect["Size"]


# ---------------------------------------------------------------------------------------- hostile layers


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file outside the target that no layer may touch."""
    outside = tmp_path / "outside"
    outside.mkdir()
    c = outside / "canary"
    c.write_text("untouched")
    return c


def assert_untouched(canary: Path, tmp_path: Path) -> None:
    assert canary.read_text() == "untouched"
    assert sorted(p.name for p in canary.parent.iterdir()) == ["canary"]
    # nothing appeared next to the target either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "t"]


def test_dotdot_entry_refused(tmp_path: Path, canary: Path) -> None:
    data = make_tar(reg("a", b"ok"), reg("../outside/canary", b"pwned"))
    with pytest.raises(DataCorrupted, match=r"\.\./outside/canary"):
        apply(data, tmp_path / "t")
    assert_untouched(canary, tmp_path)


def test_dotdot_in_the_middle_refused(tmp_path: Path, canary: Path) -> None:
    data = make_tar(reg("a/../../outside/canary", b"pwned"))
    with pytest.raises(DataCorrupted):
        apply(data, tmp_path / "t")
    assert_untouched(canary, tmp_path)


def test_write_through_absolute_symlink_stays_inside(tmp_path: Path, canary: Path) -> None:
    data = make_tar(link("evil", str(canary.parent)), reg("evil/canary", b"pwned"), reg("evil/new", b"pwned"))
    t = tmp_path / "t"
    apply(data, t)
    assert_untouched(canary, tmp_path)
    # resolved as in the container: below the target
    inner = t / str(canary.parent).lstrip("/")
    assert (inner / "canary").read_bytes() == b"pwned"
    assert (inner / "new").read_bytes() == b"pwned"


def test_symlink_dir_escape_stays_inside(tmp_path: Path, canary: Path) -> None:
    data = make_tar(
        link("up", "../../../../../../.."),
        reg("up/outside/canary", b"pwned"),
        dir_("a"),
        link("a/b", "../../outside"),
        reg("a/b/canary", b"pwned"),
        link("chain1", "chain2"),
        link("chain2", "/a/b"),
        reg("chain1/third", b"pwned"),
    )
    t = tmp_path / "t"
    apply(data, t)
    assert_untouched(canary, tmp_path)
    assert (t / "outside/canary").read_bytes() == b"pwned"
    assert (t / "outside/third").read_bytes() == b"pwned"


def test_symlink_loop_refused(tmp_path: Path, canary: Path) -> None:
    data = make_tar(link("a", "b"), link("b", "a"), reg("a/x", b"x"))
    with pytest.raises(DataCorrupted, match="symbolic links"):
        apply(data, tmp_path / "t")
    assert_untouched(canary, tmp_path)


def test_replacing_a_symlink_does_not_write_through_it(tmp_path: Path, canary: Path) -> None:
    data = make_tar(link("c", str(canary)), reg("c", b"pwned"), link("d", str(canary.parent)), dir_("d"))
    t = tmp_path / "t"
    apply(data, t)
    assert_untouched(canary, tmp_path)
    assert (t / "c").read_bytes() == b"pwned"
    assert (t / "d").is_dir() and not (t / "d").is_symlink()


def test_whiteout_through_symlink_stays_inside(tmp_path: Path, canary: Path) -> None:
    if not IS_ROOT:
        pytest.skip("whiteouts are device nodes: need root")
    data = make_tar(link("l", str(canary.parent)), reg("l/.wh.canary"), dir_("o"), link("o/p", str(canary.parent)),
                    reg("o/p/.wh..wh..opq"))
    t = tmp_path / "t"
    apply(data, t)
    assert_untouched(canary, tmp_path)
    assert "trusted.overlay.opaque" not in os.listxattr(canary.parent)


def test_hardlink_to_host_file_refused(tmp_path: Path, canary: Path) -> None:
    for _i, target in enumerate(["/etc/shadow", str(canary), "../outside/canary", "../../../../../../etc/shadow"]):
        t = tmp_path / "t"
        with pytest.raises(DataCorrupted):
            apply(make_tar(link("stolen", target, tarfile.LNKTYPE)), t)
        assert not (t / "stolen").exists(), target
        for p in t.iterdir():
            assert os.lstat(p).st_ino != os.lstat(canary).st_ino
        assert_untouched(canary, tmp_path)
        subprocess.run(["rm", "-rf", str(t)], check=True)


def test_hardlink_through_symlink_refused(tmp_path: Path, canary: Path) -> None:
    data = make_tar(link("dir", str(canary.parent)), link("stolen", "dir/canary", tarfile.LNKTYPE))
    with pytest.raises(DataCorrupted, match="stolen"):
        apply(data, tmp_path / "t")
    assert_untouched(canary, tmp_path)
    assert os.lstat(canary).st_nlink == 1


def test_hardlink_to_escaping_symlink_links_the_symlink(tmp_path: Path, canary: Path) -> None:
    data = make_tar(link("s", str(canary)), link("h", "s", tarfile.LNKTYPE, mode=0o600, mtime=5))
    before = os.stat(canary)
    t = tmp_path / "t"
    apply(data, t)
    assert os.readlink(t / "h") == str(canary)
    assert os.lstat(t / "h").st_ino == os.lstat(t / "s").st_ino
    after = os.stat(canary)
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert_untouched(canary, tmp_path)


def test_device_nodes_only_as_root(tmp_path: Path) -> None:
    t = tmp_path / "t"
    apply(make_tar(node("dev/sda", tarfile.BLKTYPE, 8, 0), reg("ok", b"1")), t)
    assert (t / "ok").exists()
    if IS_ROOT:
        assert stat.S_ISBLK(os.lstat(t / "dev/sda").st_mode)
    else:
        assert not (t / "dev/sda").exists()


def test_truncated_and_corrupt_layers(tmp_path: Path) -> None:
    data = make_tar(reg("a", b"x" * 5000), reg("b", b"y"))
    with pytest.raises(DataCorrupted):
        apply(data[:3000], tmp_path / "t1")
    with pytest.raises(DataCorrupted):
        apply(gz(data)[:-10], tmp_path / "t2")
    bad = bytearray(data)
    bad[512 * 11 + 5] ^= 0xFF  # the header of "b": checksum mismatch
    with pytest.raises(DataCorrupted):
        apply(bytes(bad), tmp_path / "t3")
    with pytest.raises(DataCorrupted):
        apply(b"\x1f\x8b\x08" + b"garbage" * 10, tmp_path / "t4")


def test_expected_diff_id_checked(tmp_path: Path) -> None:
    data = make_tar(reg("a", b"x"))
    with pytest.raises(DataCorrupted, match="diff ID"):
        apply(data, tmp_path / "t", expected_diff_id="sha256:" + "0" * 64)
    res = apply(data, tmp_path / "t2", expected_diff_id="sha256:" + hashlib.sha256(data).hexdigest())
    assert res.entries == 1


def test_long_and_unicode_names(tmp_path: Path) -> None:
    long = "/".join(["d" * 60] * 5) + "/f"
    data = make_tar(reg(long, b"deep"), reg("ünïcödé/☃", b"snow"), link("l" * 150, "t" * 200))
    t = tmp_path / "t"
    apply(data, t)
    assert (t / long).read_bytes() == b"deep"
    assert (t / "ünïcödé/☃").read_bytes() == b"snow"
    assert os.readlink(t / ("l" * 150)) == "t" * 200


def test_large_layer_is_fast(tmp_path: Path) -> None:
    """~150 MiB: one big file and many small ones, gzip; bodies are copied in large chunks."""
    block = os.urandom(1 << 20)

    class Big(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            n = min(len(b), len(block))
            b[:n] = block[:n]
            return n

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("big/blob")
        info.size = 120 << 20
        tf.addfile(info, io.BufferedReader(Big()))
        for i in range(3000):
            info = tarfile.TarInfo(f"small/{i % 30}/{i}")
            info.size = 10_000
            tf.addfile(info, io.BytesIO(block[i : i + 10_000]))
    data = buf.getvalue()
    blob = gz(data)
    t = tmp_path / "t"
    t.mkdir()
    start = time.monotonic()
    res = apply_layer(chunks(blob, 1 << 20), t)
    elapsed = time.monotonic() - start
    assert res.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert os.path.getsize(t / "big/blob") == 120 << 20
    print(f"applied {len(data) >> 20} MiB in {elapsed:.2f}s")
    assert elapsed < 30
