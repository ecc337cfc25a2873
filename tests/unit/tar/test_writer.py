"""Tests of dockwright.tar.writer: tar headers byte for byte against Go's (the dockerd 20.10 save fixture), long
and non-ASCII names, PAX records, and the shared header primitives."""

from __future__ import annotations

import io
import tarfile

import pytest

from dockwright.tar.writer import TarWriter, entry_header, pax_record, with_owner_names

from conftest import FIXTURES

SAVE_BUSYBOX = FIXTURES / "dockerd-20.10-save-busybox.tar"
needs_fixtures = pytest.mark.skipif(not SAVE_BUSYBOX.exists(), reason="shared fixtures missing")


@needs_fixtures
def test_headers_match_go_byte_for_byte() -> None:
    """dockerd 20.10's headers (Go archive/tar, uname root) against ours with the same fields."""
    raw = SAVE_BUSYBOX.read_bytes()
    tw = TarWriter(uname="root", gname="root")
    with tarfile.open(SAVE_BUSYBOX) as tf:
        for m in tf.getmembers():
            got = raw[m.offset : m.offset + 512]
            if m.isdir():
                ours = tw.header_dir(m.name, mode=m.mode & 0o7777, mtime=m.mtime)
            else:
                ours = tw.header_file(m.name, m.size, mode=m.mode & 0o7777, mtime=m.mtime)
            assert ours == got, m.name


def test_header_defaults_are_dockerd_25() -> None:
    hdr = TarWriter().header_file("index.json", 10)
    info = tarfile.TarInfo.frombuf(hdr, "utf-8", "surrogateescape")
    assert (info.name, info.size, info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime) == \
        ("index.json", 10, 0o100644, 0, 0, "", "", 0)
    assert hdr[100:108] == b"0100644\0" and hdr[257:265] == b"ustar\x0000"
    d = TarWriter().header_dir("blobs")
    assert d[:6] == b"blobs/" and d[100:108] == b"0040755\0" and d[156:157] == b"5"
    assert TarWriter.padding(512) == b"" and TarWriter.padding(513) == bytes(511)
    assert TarWriter.end() == bytes(1024)
    assert TarWriter().header_file("x", 1, mtime=1700000000.9)[136:148] == b"%011o\0" % 1700000000


@pytest.mark.parametrize("name", [
    "d/" * 60 + "file",                          # splits into USTAR prefix + name
    "x" * 120,                                   # cannot split: PAX path
    "blobs/sha256/" + "é" * 10,                  # non-ASCII: PAX path
])
def test_long_and_non_ascii_names(name: str) -> None:
    tw = TarWriter()
    body = b"hello"
    data = tw.header_file(name, len(body)) + body + tw.padding(len(body)) + \
        tw.header_symlink("link", "t/" * 80 + "target") + tw.end()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        m = tf.getmember(name)
        assert tf.extractfile(m).read() == body  # type: ignore[union-attr]
        assert tf.getmember("link").linkname == "t/" * 80 + "target"


def test_huge_size_uses_a_pax_record() -> None:
    size = (8 << 30) + 1
    hdr = TarWriter().header_file("blobs/sha256/" + "a" * 64, size)
    assert hdr[156:157] == b"x" and b"size=%d\n" % size in hdr
    assert len(hdr) == 3 * 512
    main = hdr[1024:]
    assert main[124:136] == b"00000000000\0" and main[156:157] == b"0"
    assert tarfile.TarInfo.frombuf(main, "utf-8", "strict").name == "blobs/sha256/" + "a" * 64


@pytest.mark.parametrize("value", [b"", b"x", b"x" * 90, b"x" * 991, b"x" * 995, b"x" * 9990])
def test_pax_record_length_counts_itself(value: bytes) -> None:
    record = pax_record(b"path", value)
    length, _, rest = record.partition(b" ")
    assert int(length) == len(record) and rest == b"path=" + value + b"\n"


def test_entry_header_with_owner_names() -> None:
    hdr = with_owner_names(entry_header(b"f", b"0", 0o100644, 1000, 1000, 3, 1700000000), "user", "group")
    info = tarfile.TarInfo.frombuf(hdr, "utf-8", "strict")
    assert (info.name, info.uid, info.uname, info.gname, info.size) == ("f", 1000, "user", "group", 3)
    long = entry_header(b"d/" * 60 + b"f", b"0", 0o100644, 0, 0, 0, 0, xattrs=[(b"user.a", b"1")])
    assert long[156:157] == b"x" and b"SCHILY.xattr.user.a=1\n" in long


def test_entry_header_fast_block_is_the_general_one() -> None:
    """Entries whose fields fit a USTAR block as they are get it made in one piece; it is byte for byte the block
    the general path makes, and fields that do not fit still take the general path (PAX or base-256)."""
    import random

    from dockwright.tar import writer

    def general(*args: object) -> bytes:
        saved = writer._plain_block  # noqa: SLF001
        writer._plain_block = lambda *a: None  # type: ignore[assignment]  # noqa: SLF001
        try:
            return entry_header(*args)  # type: ignore[arg-type]
        finally:
            writer._plain_block = saved  # noqa: SLF001

    rnd = random.Random(7)
    fast = 0
    for i in range(3000):
        name = (b"d%d/" % i) * rnd.randint(1, 40) + rnd.choice([b"f", b"\xc3\xa9", b""])
        kind = rnd.choice([b"0", b"5", b"2", b"1", b"3", b"6"])
        link = b"" if kind not in (b"1", b"2") else b"x/" * rnd.randint(0, 60)
        args = (name, kind, rnd.choice([0o100644, 0o40755, 0o120777, 0o4755, 8**7, 0o777]),
                rnd.choice([0, 1000, 8**7 - 1, 8**7, 2**21 + 5]), rnd.choice([0, 65534, 8**7]),
                rnd.choice([0, 1, 2**33, 8**11 - 1, 8**11]), rnd.choice([0, 1700000000, 8**11]), link,
                rnd.choice([0, 1, 8**7]), rnd.choice([0, 3, 255]))
        assert entry_header(*args) == general(*args), args
        fast += writer._plain_block(*args) is not None  # noqa: SLF001
    assert 50 < fast < 3000  # both paths were taken
    block = entry_header(b"a/b.txt", b"0", 0o100644, 0, 0, 5, 1700000000)
    info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    assert (info.name, info.size, info.mtime, info.mode, info.chksum) == ("a/b.txt", 5, 1700000000, 0o100644,
                                                                          tarfile.calc_chksums(block)[0])
