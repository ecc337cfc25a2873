"""Tests of dockwright.layers.compression on real data made by real compressors."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import tarfile
import zlib

import pytest
import zstandard

from dockwright.errors import DataCorrupted, InvalidArgument
from dockwright.layers import compression as comp
from dockwright.layers.compression import (
    Compression,
    decompressor,
    detect,
    gzip_compressor,
    zstd_compressor,
)
from dockwright.layers.mediatypes import compression_from_media_type

from conftest import FIXTURES

SKOPEO = FIXTURES / "skopeo-oci-archive-whiteouts.tar"


def payload(n: int = 300_000) -> bytes:
    rnd = random.Random(n)
    # half compressible, half random
    return b"layer data " * (n // 22) + rnd.randbytes(n // 2)


def compress_with(kind: Compression, data: bytes) -> bytes:
    if kind is Compression.NONE:
        return data
    if kind is Compression.GZIP:
        return gzip.compress(data)
    if kind is Compression.BZIP2:
        return bz2.compress(data)
    if kind is Compression.XZ:
        return lzma.compress(data)
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def run(kind: Compression, blob: bytes, chunk: int | None = None, max_piece: int = comp.MAX_PIECE) -> bytes:
    """Decompress ``blob`` fed in ``chunk``-sized pieces (all at once if None); every output piece is checked
    against the bound."""
    d = decompressor(kind, max_piece=max_piece)
    out = []
    for i in range(0, len(blob), chunk or max(len(blob), 1)):
        for piece in d.feed(blob[i : i + (chunk or len(blob))]):
            assert 0 < len(piece) <= max_piece
            out.append(piece)
    d.finish()
    return b"".join(out)


ALL = list(Compression)
COMPRESSED = [k for k in Compression if k is not Compression.NONE]


# ---------------------------------------------------------------------------------------- detect


@pytest.mark.parametrize("kind", ALL)
def test_detect_real_blobs(kind: Compression) -> None:
    data = payload(10_000)
    assert detect(compress_with(kind, data)) is kind
    assert Compression.detect(compress_with(kind, data)[:8]) is kind


def test_detect_tar_and_short_inputs() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("a")
        tf.addfile(info)
    assert detect(buf.getvalue()) is Compression.NONE
    assert detect(b"") is Compression.NONE
    assert detect(b"\x1f\x8b") is Compression.NONE  # moby needs the method byte too
    assert detect(b"BZh") is Compression.BZIP2
    assert detect(memoryview(b"\x28\xb5\x2f\xfd")) is Compression.ZSTD


def test_detect_zstd_skippable_frame() -> None:
    skippable = (0x184D2A5F).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"meta"
    assert detect(skippable) is Compression.ZSTD
    assert detect(skippable[:7]) is Compression.NONE


# ---------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("chunk", [None, 1 << 20, 4096, 7])
@pytest.mark.parametrize("max_piece", [comp.MAX_PIECE, 1000])
def test_round_trip(kind: Compression, chunk: int | None, max_piece: int) -> None:
    data = payload()
    assert run(kind, compress_with(kind, data), chunk, max_piece) == data


@pytest.mark.parametrize("kind", ALL)
def test_round_trip_one_byte_chunks(kind: Compression) -> None:
    data = payload(3000)
    assert run(kind, compress_with(kind, data), 1) == data


@pytest.mark.parametrize("kind", ALL)
def test_memoryview_and_bytearray_input(kind: Compression) -> None:
    data = payload(5000)
    blob = compress_with(kind, data)
    d = decompressor(kind)
    out = b"".join(d.feed(memoryview(blob)[:100])) + b"".join(d.feed(bytearray(blob[100:])))
    d.finish()
    assert out == data


@pytest.mark.parametrize("level", list(range(-1, 10)))
def test_gzip_compressor_levels(level: int) -> None:
    data = payload(50_000)
    c = gzip_compressor(level)
    blob = b"".join(c.compress(data[i : i + 9999]) for i in range(0, len(data), 9999)) + c.flush()
    assert blob[:3] == b"\x1f\x8b\x08"
    assert detect(blob) is Compression.GZIP
    assert gzip.decompress(blob) == data  # a standard gzip stream
    assert zlib.decompress(blob, wbits=31) == data
    assert run(Compression.GZIP, blob, 1000) == data


def test_gzip_compressor_default_and_errors() -> None:
    c = gzip_compressor()
    assert c.kind is Compression.GZIP
    blob = c.compress(b"hello") + c.flush()
    assert gzip.decompress(blob) == b"hello"
    with pytest.raises(ValueError):
        c.compress(b"more")
    with pytest.raises(ValueError):
        c.flush()
    for bad in (10, -2, 99):
        with pytest.raises(InvalidArgument):
            gzip_compressor(bad)


def test_gzip_zlib_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comp, "_gzip_impl", zlib)
    monkeypatch.setattr(comp, "HAVE_ISAL", False)
    data = payload(20_000)
    c = gzip_compressor(6)
    blob = c.compress(data) + c.flush()
    assert gzip.decompress(blob) == data
    assert run(Compression.GZIP, blob + gzip.compress(b"x"), 333) == data + b"x"
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        run(Compression.GZIP, blob[:-4])


@pytest.mark.parametrize("level", [1, 3, 10, -1])
def test_zstd_compressor(level: int) -> None:
    data = payload(80_000)
    c = zstd_compressor(level)
    assert c.kind is Compression.ZSTD
    blob = c.compress(data[:30000]) + c.compress(data[30000:]) + c.flush()
    assert detect(blob) is Compression.ZSTD
    assert run(Compression.ZSTD, blob, 4096) == data
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob))
    assert reader.read() == data
    assert zstandard.get_frame_parameters(blob).has_checksum
    corrupt = bytearray(blob)
    corrupt[-2] ^= 0xFF  # the content checksum
    with pytest.raises(DataCorrupted):
        run(Compression.ZSTD, bytes(corrupt))


def test_zstd_compressor_bad_level() -> None:
    with pytest.raises(InvalidArgument):
        zstd_compressor(23)
    with pytest.raises(InvalidArgument):
        zstd_compressor(True)


# ---------------------------------------------------------------------------------------- multi-member


def test_gzip_multi_member_and_zero_padding() -> None:
    parts = [payload(1000), b"", payload(2000), b"tail"]
    blob = b"".join(gzip.compress(p) for p in parts)
    for chunk in (None, 1, 5, 64):
        assert run(Compression.GZIP, blob, chunk) == b"".join(parts)
    padded = gzip.compress(b"one") + bytes(100) + gzip.compress(b"two") + bytes(7)
    for chunk in (None, 1, 3):
        assert run(Compression.GZIP, padded, chunk) == b"onetwo"


def test_gzip_trailing_garbage_is_corrupt() -> None:
    with pytest.raises(DataCorrupted):
        run(Compression.GZIP, gzip.compress(b"abc") + b"garbage")


def test_bzip2_multi_stream() -> None:
    blob = bz2.compress(b"first ") + bz2.compress(payload(4000))
    assert run(Compression.BZIP2, blob, 11) == b"first " + payload(4000)


def test_xz_multi_stream_padding_and_lzma_alone() -> None:
    blob = lzma.compress(b"alpha") + bytes(8) + lzma.compress(b"beta")
    for chunk in (None, 1, 10):
        assert run(Compression.XZ, blob, chunk) == b"alphabeta"
    alone = lzma.compress(payload(5000), format=lzma.FORMAT_ALONE)
    assert run(Compression.XZ, alone, 100) == payload(5000)


def test_zstd_multi_frame_unknown_size_and_skippable() -> None:
    cctx = zstandard.ZstdCompressor(write_content_size=False)
    f1 = cctx.compress(b"frame one ")
    c = zstandard.ZstdCompressor().compressobj()
    f2 = c.compress(payload(20_000)) + c.flush()  # streamed: no content size in the header
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    blob = skippable + f1 + f2 + skippable
    for chunk in (None, 1, 13, 4096):
        assert run(Compression.ZSTD, blob, chunk) == b"frame one " + payload(20_000)
    # a frame too big to know its size up front, fed in pieces
    big = payload(3_000_000)
    w = zstandard.ZstdCompressor().compressobj()
    stream = b"".join(w.compress(big[i : i + 100_000]) for i in range(0, len(big), 100_000)) + w.flush()
    assert zstandard.get_frame_parameters(stream).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert run(Compression.ZSTD, stream, 1 << 20) == big


# ---------------------------------------------------------------------------------------- corrupt input


@pytest.mark.parametrize("kind", COMPRESSED)
@pytest.mark.parametrize("cut", [1, 10, 0.5])
def test_truncated_stream(kind: Compression, cut: float) -> None:
    blob = compress_with(kind, payload(50_000))
    n = int(len(blob) * cut) if isinstance(cut, float) else len(blob) - cut
    d = decompressor(kind)
    for _ in d.feed(blob[:n]):
        pass
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        d.finish()


@pytest.mark.parametrize("kind", COMPRESSED)
def test_empty_stream(kind: Compression) -> None:
    d = decompressor(kind)
    assert list(d.feed(b"")) == []
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        d.finish()


def test_empty_uncompressed_is_fine() -> None:
    assert run(Compression.NONE, b"") == b""


@pytest.mark.parametrize("kind", COMPRESSED)
def test_corrupt_stream(kind: Compression) -> None:
    blob = bytearray(compress_with(kind, payload(50_000)))
    # flip bytes in the middle of the data (header intact, so detection still says `kind`)
    for i in range(len(blob) // 2, len(blob) // 2 + 16):
        blob[i] ^= 0x5A
    with pytest.raises(DataCorrupted):
        run(kind, bytes(blob), 4096)


@pytest.mark.parametrize("kind", COMPRESSED)
def test_not_compressed_at_all(kind: Compression) -> None:
    with pytest.raises(DataCorrupted):
        run(kind, b"this is plainly not compressed data, just text" * 10)


def test_gzip_crc_mismatch() -> None:
    blob = bytearray(gzip.compress(payload(1000)))
    blob[-6] ^= 1  # CRC32 in the trailer
    with pytest.raises(DataCorrupted):
        run(Compression.GZIP, bytes(blob))


def test_finished_decompressor_cannot_be_reused() -> None:
    for kind in ALL:
        d = decompressor(kind)
        assert b"".join(d.feed(compress_with(kind, b"x"))) == b"x"
        d.finish()
        with pytest.raises(ValueError):
            d.feed(b"x")
        with pytest.raises(ValueError):
            d.finish()


@pytest.mark.parametrize("kind", ALL)
def test_unconsumed_output_is_an_error(kind: Compression) -> None:
    """Output not taken before the next feed() would be lost: feed() and finish() refuse to go on."""
    d = decompressor(kind, max_piece=1000)
    pieces = d.feed(compress_with(kind, payload(20_000)))
    assert len(next(pieces)) == 1000
    with pytest.raises(ValueError, match="not consumed"):
        d.feed(b"more")
    with pytest.raises(ValueError, match="not consumed"):
        d.finish()


# ---------------------------------------------------------------------------------------- fixture


@pytest.mark.skipif(not SKOPEO.exists(), reason="shared fixtures missing")
def test_skopeo_layers_decompress_to_their_diff_ids() -> None:
    with tarfile.open(SKOPEO) as tf:
        def blob(digest: str) -> bytes:
            f = tf.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert f is not None
            return f.read()

        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
            data = blob(layer["digest"])
            kind = compression_from_media_type(layer["mediaType"])
            assert kind is Compression.GZIP and detect(data) is kind
            out = run(kind, data, 65536)
            assert "sha256:" + hashlib.sha256(out).hexdigest() == diff_id


def test_large_input_chunks_are_memory_sane() -> None:
    data = os.urandom(1 << 20) * 4
    c = gzip_compressor()
    blob = c.compress(data) + c.flush()
    d = decompressor(Compression.GZIP)
    total = 0
    for i in range(0, len(blob), 1 << 20):
        for piece in d.feed(blob[i : i + (1 << 20)]):
            assert len(piece) <= comp.MAX_PIECE
            total += len(piece)
    d.finish()
    assert total == len(data)


# ---------------------------------------------------------------------------------------- bounded output (bombs)
#
# A decompression bomb is a small blob that inflates to a huge run of (usually) zeros.  Inflating it is
# legitimate — a huge layer of zeros is a valid layer, and dockerd processes it in full, streaming — but
# no call may hand out more than ``max_piece`` bytes at once, whatever one input chunk inflates to.

GiB = 1 << 30
_ZEROS = bytes(16 << 20)
#: What a bomb may make Python hold while it inflates: a few pieces and the decoder's own state (liblzma's and
#: libbz2's allocations go through PyMem and are counted), against the gibibytes it inflates to.
PEAK = 8 << 20


def zeros_blob(kind: Compression, n: int, **kw: object) -> bytes:
    """``n`` zero bytes compressed as one member/stream/frame, made streaming (never held inflated)."""
    if kind is Compression.GZIP:
        from isal import isal_zlib

        c = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)  # ~1000:1 on zeros, at GB/s
    elif kind is Compression.BZIP2:
        c = bz2.BZ2Compressor(9)
    elif kind is Compression.XZ:
        c = lzma.LZMACompressor(preset=1)
    else:
        c = zstandard.ZstdCompressor(level=1, **kw).compressobj(size=n if kw else -1)  # type: ignore[arg-type]
    out = []
    zeros = memoryview(_ZEROS)
    for i in range(0, n, len(zeros)):
        out.append(c.compress(zeros[: min(len(zeros), n - i)]))
    out.append(c.flush())
    return b"".join(out)


def inflate_bounded(kind: Compression, blob: bytes, *, chunk: int | None = None,
                    max_piece: int = comp.MAX_PIECE) -> tuple[int, int, int]:
    """Decompress ``blob`` (in one feed, or ``chunk``-sized feeds) keeping nothing: (total bytes out, the
    largest piece, the peak of Python allocations while doing it).  Every piece must be zeros."""
    import tracemalloc

    d = decompressor(kind, max_piece=max_piece)
    total = largest = 0
    step = chunk or len(blob)
    tracemalloc.start()
    try:
        for i in range(0, len(blob), step):
            for piece in d.feed(blob[i : i + step]):
                n = len(piece)
                assert 0 < n <= max_piece
                assert piece == _ZEROS[:n]  # all zeros (slice and memcmp: ~20 GB/s)
                total += n
                largest = max(largest, n)
                del piece
        d.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return total, largest, peak


def test_gzip_bomb_2gib_in_one_feed_comes_out_in_bounded_pieces() -> None:
    blob = zeros_blob(Compression.GZIP, 2 * GiB)
    assert len(blob) < 3 << 20  # ~2 MB that inflate to 2 GiB
    total, largest, peak = inflate_bounded(Compression.GZIP, blob)
    assert total == 2 * GiB
    assert largest == comp.MAX_PIECE
    assert peak < PEAK


def test_gzip_bomb_with_the_zlib_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comp, "_gzip_impl", zlib)
    blob = zeros_blob(Compression.GZIP, 512 << 20)
    total, largest, peak = inflate_bounded(Compression.GZIP, blob, max_piece=256 << 10)
    assert (total, largest) == (512 << 20, 256 << 10)
    assert peak < PEAK


def test_multi_member_gzip_bomb_with_zero_padding() -> None:
    member = zeros_blob(Compression.GZIP, 128 << 20)
    blob = (member + bytes(100)) * 8 + member  # pigz-style members, zeros between them (gzip(1) skips them)
    total, largest, peak = inflate_bounded(Compression.GZIP, blob)
    assert total == 9 * (128 << 20)
    assert largest == comp.MAX_PIECE
    assert peak < PEAK


def test_bzip2_bomb_single_stream_and_multi_stream() -> None:
    stream = zeros_blob(Compression.BZIP2, 64 << 20)
    assert len(stream) < 200  # bzip2's run-length stage makes the highest ratio of all
    total, largest, peak = inflate_bounded(Compression.BZIP2, stream)
    assert (total, largest) == (64 << 20, comp.MAX_PIECE)
    assert peak < PEAK
    total, largest, peak = inflate_bounded(Compression.BZIP2, stream * 8, max_piece=64 << 10)
    assert (total, largest) == (8 * (64 << 20), 64 << 10)
    assert peak < PEAK


def test_xz_bomb_and_concatenated_streams() -> None:
    stream = zeros_blob(Compression.XZ, 64 << 20)
    blob = stream + bytes(4) + stream * 3  # stream padding in multiples of 4, as xz(1) writes it
    total, largest, peak = inflate_bounded(Compression.XZ, blob)
    assert (total, largest) == (4 * (64 << 20), comp.MAX_PIECE)
    assert peak < PEAK


def test_zstd_bomb_2gib_in_one_feed_and_byte_by_byte() -> None:
    blob = zeros_blob(Compression.ZSTD, 2 * GiB)
    assert len(blob) < 100_000
    total, largest, peak = inflate_bounded(Compression.ZSTD, blob)
    assert total == 2 * GiB and largest <= comp.MAX_PIECE
    assert peak < PEAK
    small = zeros_blob(Compression.ZSTD, 64 << 20)
    total, largest, _ = inflate_bounded(Compression.ZSTD, small, chunk=1, max_piece=200_000)
    assert total == 64 << 20 and largest <= 200_000


def test_zstd_bomb_over_4gib_with_its_content_size_in_the_header() -> None:
    # a pledged size ≥ 4 GiB is written as an 8-byte Frame_Content_Size (the largest header the walker reads)
    blob = zeros_blob(Compression.ZSTD, 5 * GiB, write_content_size=True)
    assert zstandard.get_frame_parameters(blob).content_size == 5 * GiB
    total, largest, _ = inflate_bounded(Compression.ZSTD, blob, chunk=4096)
    assert total == 5 * GiB and largest <= comp.MAX_PIECE


def test_passthrough_cuts_big_chunks() -> None:
    data = payload(3_000_000)
    d = decompressor(Compression.NONE, max_piece=1 << 20)
    pieces = list(d.feed(data))
    d.finish()
    assert [len(p) for p in pieces] == [1 << 20, 1 << 20, len(data) - (2 << 20)]
    assert b"".join(pieces) == data


def test_stream_over_chunks() -> None:
    data = payload(200_000)
    blob = compress_with(Compression.XZ, data)
    chunks = (blob[i : i + 999] for i in range(0, len(blob), 999))
    assert b"".join(decompressor(Compression.XZ, max_piece=4096).stream(chunks)) == data
    with pytest.raises(DataCorrupted, match="unexpected EOF"):
        b"".join(decompressor(Compression.XZ).stream([blob[:-10]]))


# ---------------------------------------------------------------------------------------- the zstd frame walker


def _frame(fhd: int, header_rest: bytes, blocks: list[tuple[int, bytes]], checksum: bool) -> bytes:
    """A zstd frame made by hand: blocks are (type, content); raw blocks (type 0) are valid data."""
    out = bytearray((0xFD2FB528).to_bytes(4, "little") + bytes([fhd]) + header_rest)
    for i, (btype, content) in enumerate(blocks):
        size = len(content) if btype != 1 else 1000  # RLE: the size field is the regenerated size
        out += ((size << 3) | (btype << 1) | (i == len(blocks) - 1)).to_bytes(3, "little") + content
    if checksum:
        out += b"\0\0\0\0"
    return bytes(out)


def _walk(data: bytes, step: int, budget: int = 1 << 40) -> comp._ZstdWalker:
    w = comp._ZstdWalker()
    mv = memoryview(data)
    for i in range(0, len(data), step):
        part = mv[i : i + step]
        while part:
            k = w.cut(part, budget)
            assert 0 < k <= len(part)
            part = part[k:]
    return w


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64, 1 << 20])
def test_zstd_walker_reads_every_frame_header_form(step: int) -> None:
    frames = [
        # single segment, 1-byte content size, no window descriptor
        _frame(0x20, b"\x05", [(0, b"abcde")], checksum=False),
        # window descriptor, 1/2/4-byte dictionary ids, 2/4/8-byte content sizes (the walker does not check the
        # values), checksums
        _frame(0x01 | 0x40, b"\x00" + b"\x07" + (1000 - 256).to_bytes(2, "little"), [(0, b"x" * 100)], False),
        _frame(0x02 | 0x80 | 0x04, b"\x00" + b"\x07\x00" + (2000).to_bytes(4, "little"), [(1, b"z"), (0, b"y")],
               checksum=True),
        _frame(0x03 | 0xC0, b"\x00" + b"\x07\x00\x00\x00" + (1 << 33).to_bytes(8, "little"), [(2, b"\x00" * 30)],
               checksum=False),
        _frame(0x00, b"\x00", [(0, b"")], checksum=False),  # an empty last block
        # a skippable frame between them
        (0x184D2A5E).to_bytes(4, "little") + (7).to_bytes(4, "little") + b"skipped",
    ] * 3
    data = b"".join(frames)
    w = _walk(data, step)
    assert (w._stage, w._skip, w._field) == (comp._Z_MAGIC, 0, b"")  # exactly at a frame boundary
    # and cut inside a frame, it is not
    w = _walk(data[:-3], step)
    assert (w._stage, w._skip, w._field) != (comp._Z_MAGIC, 0, b"")


def test_zstd_walker_cuts_before_the_block_that_passes_the_budget() -> None:
    rle = _frame(0x00, b"\x00", [(1, b"z")] * 50, checksum=False)  # 50 RLE blocks of 1000 bytes
    w = comp._ZstdWalker()
    mv = memoryview(rle)
    cuts = []
    while mv:
        k = w.cut(mv, 4500)
        cuts.append(k)
        mv = mv[k:]
    # 4 bytes per block; the first slice also holds the 6-byte frame header: 5 blocks (5000 bytes) each
    assert cuts[0] == 6 + 5 * 4 and set(cuts[1:-1]) == {5 * 4}


def test_zstd_walker_errors() -> None:
    good = zstandard.ZstdCompressor().compress(b"data")
    reserved = _frame(0x00, b"\x00", [(3, b"")], checksum=False)
    for bad in (reserved, good + b"\x28\xb5\x2f\xfc" + bytes(20), good + bytes(8)):
        with pytest.raises(DataCorrupted, match="invalid zstd data"):
            run(Compression.ZSTD, bad)


# ---------------------------------------------------------------------------------------- xz memory


def _lzma_alone(dict_size: int) -> bytes:
    """A .lzma (lzma_alone) stream whose header declares ``dict_size`` (what liblzma allocates)."""
    blob = bytearray(lzma.compress(b"x" * 5000, format=lzma.FORMAT_ALONE,
                                   filters=[{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 16}]))
    blob[1:5] = dict_size.to_bytes(4, "little")  # the data only refers back 64 KiB: any bigger size decodes it
    return bytes(blob)


def test_xz_stream_asking_for_a_huge_dictionary_is_refused() -> None:
    assert run(Compression.XZ, _lzma_alone(64 << 20)) == b"x" * 5000  # xz -9's dictionary
    with pytest.raises(DataCorrupted, match="needs more than 128 MiB of memory"):
        run(Compression.XZ, _lzma_alone(1 << 30))
