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
    compression_from_media_type,
    decompressor,
    detect,
    gzip_compressor,
    oci_layer_media_type,
    zstd_compressor,
)

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


# ---------------------------------------------------------------------------------------- media types


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        ("application/vnd.oci.image.layer.v1.tar", Compression.NONE),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Compression.ZSTD),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.diff.tar", Compression.NONE),
        ("application/vnd.oci.image.layer.v1.tar+gzip; charset=binary", Compression.GZIP),
    ],
)
def test_compression_from_media_type(media_type: str, kind: Compression) -> None:
    assert compression_from_media_type(media_type) is kind


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.oci.image.manifest.v1+json",
        "application/octet-stream",
        "",
    ],
)
def test_unknown_media_type(media_type: str) -> None:
    with pytest.raises(InvalidArgument):
        compression_from_media_type(media_type)


def test_oci_layer_media_type() -> None:
    for kind in (Compression.NONE, Compression.GZIP, Compression.ZSTD):
        mt = oci_layer_media_type(kind)
        assert mt == "application/vnd.oci.image.layer.v1.tar" + comp.MEDIA_TYPE_SUFFIX[kind]
        assert compression_from_media_type(mt) is kind
    for kind in (Compression.BZIP2, Compression.XZ):
        with pytest.raises(InvalidArgument):
            oci_layer_media_type(kind)


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
