"""Tests of dockwright.tar.reader: real tars made with Python's tarfile, hand-made headers for
what tarfile cannot write, and the layers dockerd 20.10 saved (with the sizes it reported)."""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
import time
from pathlib import Path

import pytest

from dockwright.errors import DataCorrupted
from dockwright.layers.compression import Compression, decompressor
from dockwright.tar.reader import TarInspector, TarSummary

from conftest import FIXTURES

SAVE_WHITEOUTS = FIXTURES / "dockerd-20.10-save-whiteouts.tar"
SAVE_BUSYBOX = FIXTURES / "dockerd-20.10-save-busybox.tar"
INSPECT_WHITEOUTS = FIXTURES / "dockerd-20.10-inspect-whiteouts.json"
HISTORY_WHITEOUTS = FIXTURES / "dockerd-20.10-history-whiteouts.jsonl"
SKOPEO = FIXTURES / "skopeo-oci-archive-whiteouts.tar"
needs_fixtures = pytest.mark.skipif(not SAVE_WHITEOUTS.exists(), reason="shared fixtures missing")


# ---------------------------------------------------------------------------------------- helpers


def inspect(data: bytes, chunk: int | None = None, **kw: int) -> TarSummary:
    ti = TarInspector(**kw)
    if chunk is None:
        ti.feed(data)
    else:
        for i in range(0, len(data), chunk):
            ti.feed(data[i : i + chunk])
    return ti.close()


def inspect_random_chunks(data: bytes, rnd: random.Random) -> TarSummary:
    ti = TarInspector()
    i = 0
    while i < len(data):
        n = rnd.choice([1, 2, 3, 511, 512, 513, 1000, 4096, rnd.randrange(1, 20000)])
        ti.feed(memoryview(data)[i : i + n])
        i += n
    return ti.close()


def reg(name: str, data: bytes = b"", **kw: object) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    return info, data


def dir_(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info, None


def node(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def make_tar(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT, **kw: object) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:  # type: ignore[call-overload]
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def strip_end(data: bytes) -> bytes:
    """The archive without its end-of-archive zero blocks (and tarfile's record padding)."""
    end = len(data)
    while end >= 512 and data[end - 512 : end] == bytes(512):
        end -= 512
    return data[:end]


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def raw_header(
    name: bytes,
    *,
    typeflag: bytes = b"0",
    size: int = 0,
    linkname: bytes = b"",
    fmt: str = "ustar",
    size_field: bytes | None = None,
    patch: dict[int, bytes] | None = None,
    signed: bool = False,
) -> bytes:
    """One tar header block written by hand (for what tarfile cannot write)."""
    b = bytearray(512)
    b[0 : len(name)] = name
    b[100:108] = b"0000644\0"
    b[108:116] = b"0000000\0"
    b[116:124] = b"0000000\0"
    b[124:136] = size_field if size_field is not None else b"%011o\0" % size
    b[136:148] = b"00000000000\0"
    b[156:157] = typeflag
    b[157 : 157 + len(linkname)] = linkname
    if fmt == "ustar":
        b[257:265] = b"ustar\x0000"
    elif fmt == "gnu":
        b[257:265] = b"ustar  \0"
    for off, val in (patch or {}).items():
        b[off : off + len(val)] = val
    b[148:156] = b" " * 8
    chk = sum(x - 256 if (signed and x >= 128) else x for x in b)
    b[148:156] = b"%06o\0 " % chk
    return bytes(b)


def pax_records(**records: str | bytes) -> bytes:
    out = b""
    for key, value in records.items():
        key = key.replace("_", ".")
        v = value if isinstance(value, bytes) else value.encode()
        body = key.encode() + b"=" + v + b"\n"
        n = len(body) + 2
        while len(str(n)) + 1 + len(body) != n:
            n = len(str(n)) + 1 + len(body)
        out += str(n).encode() + b" " + body
    return out


def pax_header(records: bytes, typeflag: bytes = b"x") -> bytes:
    return raw_header(b"PaxHeaders/x", typeflag=typeflag, size=len(records)) + pad(records)


END = bytes(1024)


def reference_size(data: bytes, dest: Path) -> int:
    """What Go's directory.Size says for the tar extracted for real (benign archives only)."""
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(dest, filter="fully_trusted")
    seen: set[int] = set()
    total = 0
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if os.path.isdir(os.path.join(root, name)) and not os.path.islink(os.path.join(root, name)):
                continue
            if st.st_size == 0 or st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            total += st.st_size
    return total


def random_tree(rnd: random.Random, n: int, long_names: bool) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    dirs = [""]
    files: list[str] = []
    used: set[str] = set()
    for i in range(n):
        parent = rnd.choice(dirs)
        stem = f"n{i}" + ("_" + "x" * rnd.randrange(80, 180) if long_names and rnd.random() < 0.3 else "")
        name = parent + stem
        if name in used:
            continue
        used.add(name)
        r = rnd.random()
        if r < 0.2:
            members.append(dir_(name))
            dirs.append(name + "/")
        elif r < 0.6:
            size = rnd.choice([0, 1, 511, 512, 513, rnd.randrange(0, 5000)])
            members.append(reg(name, rnd.randbytes(size)))
            files.append(name)
        elif r < 0.8:
            target = rnd.choice(["", "../", "/abs/"]) + "t" * rnd.randrange(1, 60 if not long_names else 300)
            members.append(sym(name, target))
        elif files:
            members.append(hard(name, rnd.choice(files)))
    return members


# ---------------------------------------------------------------------------------------- fixtures


def _saved_layers(path: Path) -> list[bytes]:
    with tarfile.open(path) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        return [tf.extractfile(name).read() for name in manifest[0]["Layers"]]  # type: ignore[union-attr]


@needs_fixtures
def test_dockerd_saved_layers_sizes_match_dockerd() -> None:
    layers = _saved_layers(SAVE_WHITEOUTS)
    summaries = [inspect(layer, 1 << 20) for layer in layers]
    # busybox: /bin/busybox (1982256 bytes) and 8 applet symlinks -> "busybox" (7 bytes each)
    assert summaries[0] == TarSummary(entries=11, diff_size=1982256 + 8 * 7, tar_size=1996800)
    # RUN mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && echo gone > /data/c
    assert summaries[1] == TarSummary(entries=5, diff_size=13, tar_size=5120)
    # RUN rm /data/c && rm -r /data/sub && echo changed > /data/a && ... : whiteout + opaque dir
    assert summaries[2] == TarSummary(entries=6, diff_size=12, tar_size=5120)

    inspect_json = json.loads(INSPECT_WHITEOUTS.read_text())[0]
    assert sum(s.diff_size for s in summaries) == inspect_json["Size"] == 1982337
    history = [json.loads(line) for line in HISTORY_WHITEOUTS.read_text().splitlines()]
    run_sizes = [h["Size"] for h in history
                 if h["CreatedBy"].startswith("/bin/sh -c ") and "#(nop)" not in h["CreatedBy"]]
    assert run_sizes == [f"{summaries[2].diff_size}B", f"{summaries[1].diff_size}B"]


@needs_fixtures
def test_dockerd_saved_layers_any_chunking() -> None:
    rnd = random.Random(7)
    for layer in _saved_layers(SAVE_WHITEOUTS)[1:]:
        whole = inspect(layer)
        assert inspect(layer, 1) == whole
        assert inspect_random_chunks(layer, rnd) == whole
    busybox = _saved_layers(SAVE_WHITEOUTS)[0]
    assert inspect_random_chunks(busybox, rnd) == inspect(busybox)


@needs_fixtures
def test_busybox_save_fixture() -> None:
    (layer,) = _saved_layers(SAVE_BUSYBOX)
    assert inspect(layer, 65536) == TarSummary(entries=11, diff_size=1982312, tar_size=1996800)


@needs_fixtures
def test_skopeo_gzip_layers_through_decompressor() -> None:
    with tarfile.open(SKOPEO) as tf:
        def blob(digest: str) -> bytes:
            return tf.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()  # type: ignore[union-attr]

        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        sizes = []
        for layer in manifest["layers"]:
            data = blob(layer["digest"])
            d = decompressor(Compression.GZIP)
            ti = TarInspector()
            for i in range(0, len(data), 4096):
                for piece in d.feed(data[i : i + 4096]):
                    ti.feed(piece)
            d.finish()
            sizes.append(ti.close().diff_size)
    assert sizes == [1982312, 13, 12]


# ---------------------------------------------------------------------------------------- against real extraction


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("seed", range(4))
def test_random_archives_match_extraction(tmp_path: Path, fmt: int, seed: int) -> None:
    rnd = random.Random(seed * 10 + fmt)
    members = random_tree(rnd, 120, long_names=fmt != tarfile.USTAR_FORMAT)
    data = make_tar(*members, fmt=fmt)
    summary = inspect(data)
    assert summary.entries == len(members)
    assert summary.tar_size == len(data)
    assert summary.diff_size == reference_size(data, tmp_path / "x")
    assert inspect(data, 1) == summary
    assert inspect_random_chunks(data, rnd) == summary
    stripped = strip_end(data)
    assert inspect(stripped, 1000) == TarSummary(summary.entries, summary.diff_size, len(stripped))


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_chunk_fuzzing_small_archive(fmt: int) -> None:
    members = [
        dir_("etc"),
        reg("etc/hostname", b"box\n"),
        reg("etc/" + "long" * 40, b"y" * 700),
        sym("etc/" + "link" * 40, "/" + "target" * 30),
        hard("etc/hl", "etc/hostname"),
        reg("ünïcödé/файл", b"z" * 513),
        node("dev-null", tarfile.CHRTYPE),
        node("fifo", tarfile.FIFOTYPE),
    ]
    data = make_tar(*members, fmt=fmt)
    whole = inspect(data)
    assert whole.entries == len(members)
    assert whole.diff_size == 4 + 700 + 1 + 180 + 513
    assert inspect(data, 1) == whole
    rnd = random.Random(fmt)
    for _ in range(20):
        assert inspect_random_chunks(data, rnd) == whole


# ---------------------------------------------------------------------------------------- diff_size semantics


def size_of(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> int:
    return inspect(make_tar(*members, fmt=fmt)).diff_size


def test_hardlinks_count_once() -> None:
    assert size_of(reg("a", b"x" * 100), hard("b", "a"), hard("c", "/a"), hard("d", "./b")) == 100


def test_hardlink_target_replaced_keeps_old_inode() -> None:
    assert size_of(reg("a", b"x" * 100), hard("b", "a"), reg("a", b"y" * 5)) == 105
    assert size_of(reg("a", b"x" * 100), hard("b", "a"), reg("a", b"y" * 5), reg("b", b"z" * 7)) == 12


def test_hardlink_to_missing_or_dir_adds_nothing() -> None:
    assert size_of(hard("b", "nowhere"), dir_("d"), hard("e", "d"), hard("f", "")) == 0


def test_hardlink_to_symlink_counts_once() -> None:
    assert size_of(sym("l", "abcdef"), hard("l2", "l")) == 6


def test_duplicate_paths_replace() -> None:
    assert size_of(reg("a", b"x" * 10), reg("a", b"x" * 20)) == 20
    assert size_of(reg("/etc/passwd", b"x" * 10), reg("etc/passwd", b"x" * 20), reg("./etc//passwd", b"1")) == 1


def test_file_replacing_directory_removes_subtree() -> None:
    assert size_of(dir_("d"), reg("d/x", b"x" * 100), reg("d/y", b"y" * 50), reg("d", b"abc")) == 3
    # implicit parent directories too
    assert size_of(reg("d/e/x", b"x" * 100), reg("d", b"a")) == 1
    assert size_of(reg("d/e/x", b"x" * 100), sym("d/e", "elsewhere")) == 9


def test_directory_replacing_file_and_merging() -> None:
    assert size_of(reg("f", b"x" * 100), dir_("f")) == 0
    assert size_of(reg("f", b"x" * 100), dir_("f"), reg("f/x", b"12345")) == 5
    assert size_of(dir_("d"), reg("d/x", b"12345"), dir_("d")) == 5


def test_symlink_size_is_target_length() -> None:
    assert size_of(sym("l", "target/path")) == 11
    assert size_of(sym("l", "é")) == 2  # bytes, not characters
    assert size_of(sym("l", "/" + "t" * 299), fmt=tarfile.GNU_FORMAT) == 300
    assert size_of(sym("l", "/" + "t" * 299), fmt=tarfile.PAX_FORMAT) == 300


def test_empty_files_devices_fifos_count_nothing() -> None:
    assert size_of(reg("empty"), node("c", tarfile.CHRTYPE), node("b", tarfile.BLKTYPE),
                   node("p", tarfile.FIFOTYPE)) == 0


def test_whiteouts_count_nothing() -> None:
    assert size_of(dir_("d"), reg("d/.wh.gone"), reg("d/.wh..wh..opq"), reg("d/n", b"new\n")) == 4
    # a whiteout replaces what the same layer had put there (the path becomes a 0/0 device)
    assert size_of(reg("d/x", b"x" * 10), reg("d/.wh.x")) == 0
    assert size_of(dir_("d"), reg("d/sub/x", b"x" * 10), reg("d/.wh.sub")) == 0
    # entries still count
    assert inspect(make_tar(reg(".wh.a"), reg(".wh..wh..opq"))).entries == 2


def test_entries_below_a_symlink_still_count() -> None:
    assert size_of(sym("lib", "usr/lib"), reg("lib/libc.so", b"x" * 10)) == 7 + 10


def test_gnu_long_names_and_links() -> None:
    long_dir = "d" * 150
    members = [dir_(long_dir), reg(long_dir + "/" + "f" * 150, b"x" * 30), hard("h", long_dir + "/" + "f" * 150)]
    data = make_tar(*members, fmt=tarfile.GNU_FORMAT)
    assert b"././@LongLink" in data
    s = inspect(data)
    assert s.entries == 3 and s.diff_size == 30
    # hardlink with a long target through K
    members.append(hard("e" * 120, long_dir + "/" + "f" * 150))
    assert inspect(make_tar(*members, fmt=tarfile.GNU_FORMAT)).diff_size == 30


def test_pax_long_names() -> None:
    name = "/".join(["component" * 3] * 20)  # ~560 bytes
    data = make_tar(reg(name, b"abc"), hard("short", name), fmt=tarfile.PAX_FORMAT)
    s = inspect(data, 7)
    assert s.entries == 2 and s.diff_size == 3


def test_global_pax_header_is_not_an_entry_and_not_applied() -> None:
    data = make_tar(reg("a", b"12"), fmt=tarfile.PAX_FORMAT, pax_headers={"comment": "global"})
    assert data[156:157] == b"g"
    assert inspect(data) == TarSummary(entries=1, diff_size=2, tar_size=len(data))
    # Go does not apply global records to later entries: a hostile global path is harmless
    crafted = pax_header(pax_records(path="../../evil"), b"g") + raw_header(b"ok", size=3) + pad(b"abc") + END
    assert inspect(crafted).diff_size == 3


# ---------------------------------------------------------------------------------------- hand-made headers


def test_pax_size_overrides_header_size() -> None:
    body = b"q" * 600
    data = pax_header(pax_records(size="600")) + raw_header(b"big", size=0) + pad(body)
    data += raw_header(b"next", size=2) + pad(b"ok") + END
    assert inspect(data) == TarSummary(entries=2, diff_size=602, tar_size=len(data))
    assert inspect(data, 1) == inspect(data)


def test_pax_path_and_linkpath() -> None:
    data = (
        raw_header(b"target", size=4)
        + pad(b"abcd")
        + pax_header(pax_records(path="renamed/by/pax", linkpath="target"))
        + raw_header(b"ignored", typeflag=b"1")
        + END
    )
    assert inspect(data) == TarSummary(entries=2, diff_size=4, tar_size=len(data))


def test_base256_size_field() -> None:
    field = b"\x80" + (700).to_bytes(11, "big")
    data = raw_header(b"f", size_field=field, fmt="gnu") + pad(b"x" * 700) + END
    assert inspect(data).diff_size == 700
    negative = b"\xff" * 12
    with pytest.raises(DataCorrupted):
        inspect(raw_header(b"f", size_field=negative, fmt="gnu") + END)


def test_v7_header_and_signed_checksum() -> None:
    data = raw_header(b"old", size=5, fmt="v7") + pad(b"hello") + END
    assert inspect(data).diff_size == 5
    hi = raw_header("é".encode("latin-1"), size=1, signed=True) + pad(b"x") + END
    assert inspect(hi).diff_size == 1


def test_rega_type_with_trailing_slash_is_a_directory() -> None:
    data = raw_header(b"d/", typeflag=b"\0", size=0) + raw_header(b"d/f", typeflag=b"\0", size=3) + pad(b"abc")
    assert inspect(data + END) == TarSummary(entries=2, diff_size=3, tar_size=len(data) + 1024)


def test_header_only_types_have_no_body() -> None:
    # a directory and a symlink with a non-zero size field: Go reads no body for them
    data = raw_header(b"d/", typeflag=b"5", size=1000) + raw_header(b"l", typeflag=b"2", size=1000, linkname=b"abc")
    data += raw_header(b"f", size=1) + pad(b"z") + END
    assert inspect(data) == TarSummary(entries=3, diff_size=4, tar_size=len(data))


def test_old_gnu_sparse_with_extension_blocks() -> None:
    # 'S' header: 4 sparse entries inline + isextended, one extension block, then 1024 bytes of data
    sparse = b"".join(b"%011o\0%011o\0" % (i * 4096, 256) for i in range(4))
    hdr = raw_header(
        b"sparse",
        typeflag=b"S",
        size=1024,
        fmt="gnu",
        patch={386: sparse, 482: b"\x01", 483: b"%011o\0" % 1_000_000},
    )
    ext = bytearray(512)
    ext[0:24] = b"%011o\0%011o\0" % (999_000, 0)
    data = hdr + bytes(ext) + bytes(1024) + raw_header(b"after", size=2) + pad(b"ok") + END
    s = inspect(data)
    assert s == TarSummary(entries=2, diff_size=1_000_000 + 2, tar_size=len(data))
    assert inspect(data, 1) == s
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        inspect(hdr + bytes(100))


def test_pax_gnu_sparse_1_0() -> None:
    records = pax_records(
        GNU_sparse_major="1", GNU_sparse_minor="0", GNU_sparse_name="real/name", GNU_sparse_realsize="50000"
    )
    body = pad(b"1\n0\n512\n") + b"d" * 512
    data = pax_header(records) + raw_header(b"GNUSparseFile.0/name", size=len(body)) + body
    data += raw_header(b"real/name2", size=1) + pad(b"x") + END
    assert inspect(data) == TarSummary(entries=2, diff_size=50001, tar_size=len(data))


def test_pax_gnu_sparse_0_0_and_0_1() -> None:
    rec00 = pax_records(GNU_sparse_size="9999", GNU_sparse_offset="0", GNU_sparse_numbytes="10")
    rec01 = pax_records(GNU_sparse_size="8888", GNU_sparse_map="0,10", GNU_sparse_name="n01")
    data = pax_header(rec00) + raw_header(b"n00", size=10) + pad(b"0" * 10)
    data += pax_header(rec01) + raw_header(b"whatever", size=10) + pad(b"1" * 10) + END
    assert inspect(data).diff_size == 9999 + 8888


# ---------------------------------------------------------------------------------------- end of archive


def test_missing_end_marker_is_fine() -> None:
    data = make_tar(reg("a", b"x" * 1000), dir_("d"))
    bare = strip_end(data)
    assert len(bare) < len(data)
    s = inspect(bare)
    assert (s.entries, s.diff_size, s.tar_size) == (2, 1000, len(bare))
    assert inspect(bare + bytes(512)).entries == 2  # a single zero block, then EOF
    assert inspect(bare, 1) == s


def test_trailing_garbage_after_end_marker_is_ignored() -> None:
    data = make_tar(reg("a", b"x" * 10))
    junk = os.urandom(777)
    s = inspect(data + junk)
    assert s == TarSummary(entries=1, diff_size=10, tar_size=len(data) + 777)
    assert inspect(data + junk, 1) == s


def test_eof_inside_last_padding_is_fine_like_go() -> None:
    data = raw_header(b"f", size=10) + b"0123456789" + bytes(20)
    assert inspect(data) == TarSummary(entries=1, diff_size=10, tar_size=len(data))


def test_empty_input_is_an_empty_archive() -> None:
    assert inspect(b"") == TarSummary(0, 0, 0)
    assert inspect(END) == TarSummary(0, 0, 1024)


def test_truncated_body() -> None:
    data = strip_end(make_tar(reg("some/file", b"x" * 5000)))
    for cut in (600, 512 + 4999, 513):
        with pytest.raises(DataCorrupted, match=r"unexpected EOF.*some/file"):
            inspect(data[:cut])


def test_truncated_header() -> None:
    data = make_tar(reg("a", b"x"), reg("b", b"y"))
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        inspect(data[: 1024 + 100])
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        inspect(data[:300], 1)


def test_truncated_pax_header() -> None:
    data = make_tar(reg("a" * 300, b"x"))
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        inspect(data[:600])
    # extended header and then nothing
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        inspect(data[:1024])
    with pytest.raises(DataCorrupted):
        inspect(data[:1024] + END)


def test_zero_block_then_data_is_corrupt() -> None:
    data = make_tar(reg("a", b"x"))
    with pytest.raises(DataCorrupted):
        inspect(data[:1024] + bytes(512) + data[:512] + END)


def test_bad_checksum() -> None:
    data = bytearray(make_tar(reg("a", b"x"), reg("b", b"y")))
    data[1024 + 10] ^= 1  # inside the name of the second header
    with pytest.raises(DataCorrupted, match="checksum"):
        inspect(bytes(data))
    with pytest.raises(DataCorrupted, match="checksum"):
        inspect(os.urandom(4096))


def test_bad_size_field() -> None:
    with pytest.raises(DataCorrupted, match="size"):
        inspect(raw_header(b"f", size_field=b"12x45678901\0") + END)


@pytest.mark.parametrize(
    "records",
    [
        b"4 a=\n",  # shorter than the minimum record
        b"10 path=abc",  # no newline
        b"x path=abc\n",
        b"11 =nokey\n\n",
        b"99 path=abc\n",  # longer than the header
        b"13 path=a\0b\n",
    ],
)
def test_malformed_pax_records(records: bytes) -> None:
    data = pax_header(records) + raw_header(b"f") + END
    with pytest.raises(DataCorrupted):
        inspect(data)


def test_bad_pax_size_value() -> None:
    data = pax_header(pax_records(size="12abc")) + raw_header(b"f") + END
    with pytest.raises(DataCorrupted, match="size"):
        inspect(data)


def test_extended_header_size_limit() -> None:
    data = make_tar(reg("/".join(["n" * 99] * 30), b"x"))  # a 2999-byte path (components fit NAME_MAX)
    assert inspect(data, max_header_bytes=4096).entries == 1
    with pytest.raises(DataCorrupted, match="too long"):
        inspect(data, max_header_bytes=1024)


def test_errors_are_sticky_and_close_is_final() -> None:
    ti = TarInspector()
    with pytest.raises(DataCorrupted):
        ti.feed(os.urandom(512))
    with pytest.raises(DataCorrupted):
        ti.feed(END)
    with pytest.raises(DataCorrupted):
        ti.close()
    ok = TarInspector()
    ok.feed(make_tar(reg("a", b"1")))
    first = ok.close()
    assert ok.close() == first
    with pytest.raises(ValueError):
        ok.feed(b"")


# ---------------------------------------------------------------------------------------- hostile entries


@pytest.mark.parametrize(
    "members",
    [
        [reg("../evil", b"x")],
        [reg("a/../../evil", b"x")],
        [reg("./../evil")],
        [dir_("../evil")],
        [sym("../evil", "/etc/passwd")],
        [reg("..")],
        [reg("ok/../../" + "evil" * 60, b"x")],  # long name: PAX or GNU longname
        [reg("a"), hard("evil", "../../etc/shadow")],
        [hard("evil", "/../etc/shadow")],
        [hard("evil", "a/../../x")],
        [reg("d/../../.wh.evil")],
    ],
)
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_escaping_entries_are_rejected(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int) -> None:
    with pytest.raises(DataCorrupted, match="evil|escapes|'\\.\\.'"):
        inspect(make_tar(*members, fmt=fmt))


def test_escape_message_names_the_entry() -> None:
    with pytest.raises(DataCorrupted, match=r"tar entry '\.\./\.\./etc/cron\.d/x' escapes the layer root"):
        inspect(make_tar(reg("../../etc/cron.d/x", b"* * * * * root sh")))
    with pytest.raises(DataCorrupted, match=r"hardlink 'x' -> '\.\./\.\./etc/shadow' escapes"):
        inspect(make_tar(hard("x", "../../etc/shadow")))


def test_pax_path_escape_is_rejected() -> None:
    data = pax_header(pax_records(path="x/../../../evil")) + raw_header(b"harmless") + END
    with pytest.raises(DataCorrupted, match="evil"):
        inspect(data)


@pytest.mark.parametrize("name", [".", "/", "./", "a/.."])
def test_non_directory_replacing_root_is_rejected(name: str) -> None:
    data = raw_header(name.encode(), size=1) + pad(b"x") + END
    with pytest.raises(DataCorrupted, match="root"):
        inspect(data)
    assert inspect(raw_header(name.encode(), typeflag=b"5") + END).entries == 1


def test_acceptable_odd_names() -> None:
    s = inspect(
        make_tar(
            reg("/etc/passwd", b"root"),  # absolute: made relative
            reg("/../x", b"1"),  # cleans to /x
            reg("a/../b", b"22"),
            sym("up", "../../../../etc/shadow"),  # symlinks may point anywhere
            sym("abs", "/etc/shadow"),
            hard("h", "/etc/passwd"),
        )
    )
    assert s.entries == 6
    assert s.diff_size == 4 + 1 + 2 + len("../../../../etc/shadow") + len("/etc/shadow")


def test_overlong_path_is_rejected() -> None:
    data = make_tar(reg("/".join(["p" * 200] * 25), b"x"))
    with pytest.raises(DataCorrupted, match="longer than"):
        inspect(data)


def test_deep_hostile_paths_are_bounded() -> None:
    deep = "/".join(["a"] * 2000)
    members = [reg(f"t{i}/{deep}/f", b"") for i in range(60)]
    with pytest.raises(DataCorrupted, match="too many directories"):
        inspect(make_tar(*members))


# ---------------------------------------------------------------------------------------- performance


def test_large_layer_is_fast() -> None:
    mib = 1 << 20
    zeros = memoryview(bytes(mib))
    sizes = [50 * mib + 123 * i for i in range(3)]

    def chunks():  # ~1 MiB chunks of a 150 MiB layer, without holding it in memory
        for i, size in enumerate(sizes):
            yield raw_header(b"big%d" % i, size=size)
            left = size + (-size % 512)
            while left:
                n = min(left, mib)
                yield zeros[:n]
                left -= n
        yield END

    start = time.perf_counter()
    ti = TarInspector()
    total = 0
    for chunk in chunks():
        total += len(chunk)
        ti.feed(chunk)
    s = ti.close()
    elapsed = time.perf_counter() - start
    assert s == TarSummary(entries=3, diff_size=sum(sizes), tar_size=total)
    assert elapsed < 2.0, elapsed


def test_many_small_files_are_reasonably_fast() -> None:
    members = [dir_(f"d{i}") for i in range(100)]
    members += [reg(f"d{i % 100}/file{i}", b"x" * (i % 700)) for i in range(20_000)]
    data = make_tar(*members, fmt=tarfile.GNU_FORMAT)
    start = time.perf_counter()
    s = inspect(data, 1 << 20)
    elapsed = time.perf_counter() - start
    assert s.entries == 20_100
    assert s.diff_size == sum(i % 700 for i in range(20_000))
    assert elapsed < 10.0, elapsed


# ------------------------------------------------------------- what extraction would refuse, refused at ingest
# Every case is also given to the extractor (apply_layer): the inspector refuses exactly what extraction cannot
# unpack (issue 11 item 7), so a layer is refused when it is imported, loaded or pulled, never at `docker create`.

def _pax_entry(records: dict[str, str | bytes], name: bytes = b"f", typeflag: bytes = b"0") -> bytes:
    return pax_header(pax_records(**records)) + raw_header(name, typeflag=typeflag) + END


def _both_refuse(data: bytes, match: str, tmp_path: Path) -> None:
    from dockwright.layers.apply import apply_layer

    with pytest.raises(DataCorrupted, match=match):
        inspect(data, links_in_archive=True)
    with pytest.raises(DataCorrupted, match=match):
        inspect(data, 7, links_in_archive=True)
    import tempfile

    with pytest.raises(DataCorrupted, match=match):
        apply_layer([data], tempfile.mkdtemp(dir=tmp_path))


def _both_accept(data: bytes, tmp_path: Path) -> TarSummary:
    from dockwright.layers.apply import apply_layer

    s = inspect(data, links_in_archive=True)
    dest = tmp_path / "ok"
    dest.mkdir(exist_ok=True)
    assert apply_layer([data], dest).entries == s.entries
    return s


def test_component_over_name_max_is_refused(tmp_path: Path) -> None:
    _both_refuse(make_tar(reg("d/" + "n" * 256, b"x")), r"has a name of 256 bytes: longer than 255 \(NAME_MAX\)",
                 tmp_path)
    _both_refuse(make_tar(reg("n" * 300, b"x")), "file name too long", tmp_path)
    _both_refuse(make_tar(reg("f", b"x"), hard("h", "d/" + "t" * 256)), "NAME_MAX", tmp_path)


def test_long_path_of_short_components_is_fine(tmp_path: Path) -> None:
    name = "/".join(["c" * 99] * 3) + "/f"  # 303 bytes, no component over 255
    s = _both_accept(make_tar(reg(name, b"x"), reg("w/.wh." + "w" * 251)), tmp_path)
    assert s.entries == 2
    assert (tmp_path / "ok" / name).read_bytes() == b"x"
    assert _both_accept(make_tar(reg("n" * 255, b"x")), tmp_path).entries == 1


@pytest.mark.parametrize("key,value", [
    ("mtime", "garbage"), ("mtime", "inf"), ("mtime", "nan"), ("mtime", "1e9"), ("mtime", ".5"),
    ("mtime", "1" * 30), ("atime", "12:00"), ("ctime", "0x10"), ("uid", "abc"), ("gid", "1.5"),
    ("uid", str(1 << 64)),
])
def test_unparseable_pax_numbers_are_refused(tmp_path: Path, key: str, value: str) -> None:
    _both_refuse(_pax_entry({key: value}), f"bad PAX {key} record", tmp_path)


@pytest.mark.parametrize("key,value", [("uid", str(1 << 32)), ("uid", str((1 << 32) - 1)), ("gid", str(1 << 40)),
                                       ("uid", "-2")])
def test_owner_ids_lchown_cannot_take_are_refused(tmp_path: Path, key: str, value: str) -> None:
    _both_refuse(_pax_entry({key: value}), f"{key} {value} is out of range", tmp_path)


def test_base256_uid_out_of_range_is_refused(tmp_path: Path) -> None:
    field = bytes([0x80]) + (1 << 33).to_bytes(7, "big")
    _both_refuse(raw_header(b"f", patch={108: field}) + END, "uid 8589934592 is out of range", tmp_path)


@pytest.mark.parametrize("off,label", [(100, "mode"), (108, "uid"), (116, "gid"), (136, "mtime"),
                                       (329, "devmajor")])
def test_unparseable_header_numbers_are_refused(tmp_path: Path, off: int, label: str) -> None:
    _both_refuse(raw_header(b"f", patch={off: b"12x4"}) + END, f"bad {label} field", tmp_path)


def test_good_numbers_are_accepted(tmp_path: Path) -> None:
    data = _pax_entry({"mtime": "1700000000.123456789", "atime": "-5.5", "ctime": "+7", "uid": str((1 << 32) - 2),
                       "gid": "70000", "size": ""})
    assert _both_accept(data, tmp_path).entries == 1
    st = os.lstat(tmp_path / "ok" / "f")
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == ((1 << 32) - 2, 70000, 1700000000123456789)


@pytest.mark.parametrize("members,match", [
    ([hard("h", "/etc/passwd")], "the target is not in the layer"),
    ([hard("h", "missing")], "the target is not in the layer"),
    ([sym("l", "/etc"), hard("h", "l/passwd")], "goes through the symlink 'l' of the layer"),
    ([dir_("d"), reg("d/f", b"x"), sym("l", "d"), hard("h", "l/f")], "goes through the symlink 'l' of the layer"),
    ([reg("f", b"x"), hard("h", "f/g")], "the target is not in the layer"),
    ([dir_("d"), hard("h", "d")], "the target is a directory"),
    ([reg("f", b"x"), hard("f", "f")], "the link replaces it"),
    ([reg("f", b"x"), hard("h", "f"), reg("f", b"later")], None),  # fine: h was made while f existed
])
def test_layer_hardlinks_must_name_the_layers_own_entries(tmp_path: Path, members: list, match: str | None) -> None:
    data = make_tar(*members)
    assert inspect(data).entries == len(members)  # not a rule for archives in general (docker cp, ADD)
    if match is None:
        _both_accept(data, tmp_path)
    else:
        _both_refuse(data, match, tmp_path)


def test_layer_hardlinks_to_files_symlinks_and_through_directories_are_fine(tmp_path: Path) -> None:
    data = make_tar(dir_("d"), reg("d/f", b"abc"), sym("d/s", "f"), hard("/h1", "/d/f"), hard("h2", "./d/../d/s"),
                    reg(".wh.gone"), hard("h3", "gone"))
    s = _both_accept(data, tmp_path)
    assert s.entries == 7
    assert os.path.samefile(tmp_path / "ok" / "h1", tmp_path / "ok" / "d" / "f")
    assert os.readlink(tmp_path / "ok" / "h2") == "f"


def test_symlink_target_over_path_max_is_refused(tmp_path: Path) -> None:
    _both_refuse(make_tar(sym("l", "/".join(["t" * 200] * 21))), r"longer than 4095 \(PATH_MAX\)", tmp_path)
    assert _both_accept(make_tar(sym("l", "x" * 4095)), tmp_path).entries == 1
    assert os.readlink(tmp_path / "ok" / "l") == "x" * 4095
