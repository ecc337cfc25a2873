"""Tests of dockwright.tar.headers: number fields, checksums, PAX records and names as Go's archive/tar reads them."""

from __future__ import annotations

import io
import tarfile

import pytest

from dockwright.errors import DataCorrupted
from dockwright.tar.headers import (
    BadNumber,
    clean_components,
    header_checksums,
    looks_like_tar,
    parse_numeric,
    parse_pax_records,
    parse_pax_time,
)


def _header(name: str = "f") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        tf.addfile(tarfile.TarInfo(name))
    return buf.getvalue()[:512]


def test_numbers() -> None:
    assert parse_numeric(b"0000644\0") == 0o644
    assert parse_numeric(b"   \0") == 0
    assert parse_numeric(bytes([0x80]) + (12345).to_bytes(11, "big")) == 12345
    assert parse_numeric(b"\xff" * 12) == -1
    with pytest.raises(BadNumber):
        parse_numeric(b"0000x44\0")


def test_pax_time() -> None:
    assert parse_pax_time(b"1.5") == 1_500_000_000
    assert parse_pax_time(b"-1.5") == -1_500_000_000
    for bad in (b"inf", b"1e9", b".5"):
        with pytest.raises(ValueError):
            parse_pax_time(bad)


def test_checksums_and_tar_detection() -> None:
    blk = _header()
    unsigned, signed = header_checksums(blk)
    assert int(blk[148:154], 8) == unsigned == signed
    assert looks_like_tar(blk) and looks_like_tar(bytes(512))
    assert not looks_like_tar(blk[:511]) and not looks_like_tar(b"x" * 512)
    high = bytearray(_header("\u00e9"))
    assert header_checksums(bytes(high))[0] != header_checksums(bytes(high))[1]


def test_pax_records() -> None:
    assert parse_pax_records(b"11 path=ab\n23 GNU.sparse.offset=0\n", 0) == \
        {b"path": b"ab", b"GNU.sparse.map": b"0.0"}
    with pytest.raises(DataCorrupted, match="bad record length"):
        parse_pax_records(b"xx path=a\n", 512)


def test_clean_components() -> None:
    assert clean_components(b"./a//b/../c") == [b"a", b"c"]
    assert clean_components(b"/../a") == [b"a"]
    assert clean_components(b"../a") is None
