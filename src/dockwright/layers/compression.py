"""Compression of layer blobs: detection, streaming decompression, compression, media types.

This module owns everything about the compressed wrapping of a layer tar stream:

* :class:`Compression` and :func:`detect`, which recognises a blob by its magic bytes the way moby's
  ``pkg/archive.DetectCompression`` does (gzip, bzip2, xz, zstd including skippable frames; anything
  else is :attr:`Compression.NONE`);
* :func:`decompressor`, an incremental :class:`Decompressor` per kind whose output comes in pieces of
  at most :data:`MAX_PIECE` bytes (1 MiB) however much one input chunk inflates to, so that memory
  stays flat for any layer, a decompression bomb included (zlib/ISA-L, bz2 and lzma through
  ``max_length``; zstd, whose Python objects have none, through input slices cut at block boundaries
  by a walker of the frame format).  Every kind accepts concatenated members/streams/frames
  (multi-member gzip, pbzip2, concatenated xz streams, multi-frame zstd and frames without a content
  size) and :meth:`Decompressor.finish` raises :class:`~dockwright.errors.DataCorrupted` ("unexpected
  EOF …") when the input stops inside one.  Corrupt input raises
  :class:`~dockwright.errors.DataCorrupted` as soon as it is seen.  Zero bytes between or after gzip
  members and xz streams are skipped (gzip(1) and xz(1) accept them); any other trailing bytes are an
  error.  There is no limit on the inflated size (dockerd has none); xz streams that need more than
  :data:`XZ_MEMLIMIT` to decode are refused, as libzstd refuses zstd windows over 128 MiB;
* :func:`gzip_compressor` (python-isal, with :mod:`zlib` as a fallback) and :func:`zstd_compressor`;
* :class:`DecompressedReader`, a file object over a stream decompressed as it is read.

The layer media types and the compression each names are in :mod:`.mediatypes`; the push-side base of the
ingester and the verifier is in :mod:`.streams`.
"""

from __future__ import annotations

import bz2
import enum
import itertools
import lzma
import types
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast

import zstandard

from ..errors import DataCorrupted, InvalidArgument

_gzip_impl: types.ModuleType
try:  # python-isal is a declared dependency; zlib keeps things working without it.
    from isal import isal_zlib

    _gzip_impl = isal_zlib
    _GZIP_ERRORS: tuple[type[BaseException], ...] = (cast(type[BaseException], isal_zlib.error), zlib.error)
    HAVE_ISAL = True
except ImportError:  # pragma: no cover - exercised only where isal is missing
    _gzip_impl = zlib
    _GZIP_ERRORS = (zlib.error,)
    HAVE_ISAL = False

__all__ = [
    "Compression",
    "detect",
    "Decompressor",
    "decompressor",
    "DecompressedReader",
    "MAX_PIECE",
    "DETECT_BYTES",
    "XZ_MEMLIMIT",
    "Compressor",
    "gzip_compressor",
    "zstd_compressor",
    "HAVE_ISAL",
]


class Compression(enum.Enum):
    """How a layer blob is compressed."""

    NONE = "none"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"

    @classmethod
    def detect(cls, head: bytes | bytearray | memoryview) -> Compression:
        """Same as the module-level :func:`detect`."""
        return detect(head)


_GZIP_MAGIC = b"\x1f\x8b\x08"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE_START = 0x184D2A50
_ZSTD_SKIPPABLE_MASK = 0xFFFFFFF0


def detect(head: bytes | bytearray | memoryview) -> Compression:
    """The compression of a blob that starts with ``head``, as moby's ``DetectCompression``.

    ``head`` should hold at least the first 8 bytes when the blob has that many (zstd skippable frames
    need 8).  Unrecognised or too short input is :attr:`Compression.NONE`.
    """
    head = bytes(head[:8])
    if head.startswith(_BZIP2_MAGIC):
        return Compression.BZIP2
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_XZ_MAGIC):
        return Compression.XZ
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if len(head) >= 8 and int.from_bytes(head[:4], "little") & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_START:
        return Compression.ZSTD
    return Compression.NONE


# --------------------------------------------------------------------------------------------------
# decompression

#: The most decompressed bytes one piece of output holds, by default.
MAX_PIECE = 1 << 20
DETECT_BYTES = 16  # enough for every magic :func:`detect` knows
_ZLIB_IN_SLICE = 256 << 10  # zlib input given at a time (its ``unconsumed_tail`` is a copy of the rest)
_ZSTD_BLOCK_MAX = 128 << 10  # a zstd block regenerates at most this much (RFC 8878 Block_Maximum_Size)
#: liblzma's memory limit: an xz header may ask for a dictionary of up to 1.5 GiB (4 GiB for .lzma), which
#: fills as output is produced.  xz's presets need at most 65 MiB (``-9``); the limit is libzstd's default
#: for zstd windows (a frame that needs more is refused by both).
XZ_MEMLIMIT = 128 << 20


class Decompressor:
    """Incremental decompression of one blob, in pieces of bounded size.

    :meth:`feed` takes the next chunk of input and returns an iterator over the output it completes,
    made lazily in pieces of at most :attr:`max_piece` bytes: a caller holds one piece at a time, so
    memory stays flat whatever the compression ratio (a decompression bomb is just a long run of
    pieces).  Exhaust the iterator before the next :meth:`feed` or :meth:`finish` (they raise
    :class:`ValueError` otherwise).  :meth:`finish` declares the end of the input; :meth:`stream` does
    it all for an iterable of chunks.
    """

    kind: Compression

    def __init__(self, max_piece: int) -> None:
        if max_piece < 1:
            raise ValueError("max_piece must be positive")
        self.max_piece = max_piece
        self._busy = False
        self._done = False

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[bytes]:
        """Decompress the next chunk of input: an iterator over the output pieces (maybe none).

        ``data`` is read as the iterator advances: leave it unchanged until the iterator is exhausted.
        """
        self._check()
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        if not mv:
            return iter(())
        self._busy = True
        return self._run(mv)

    def finish(self) -> None:
        """Declare the end of the input (every output piece has been handed out by :meth:`feed`).

        Raises :class:`~dockwright.errors.DataCorrupted` if the input stopped inside a compressed
        stream (or held none at all).  The object cannot be used afterwards.
        """
        self._check()
        self._done = True
        self._end()

    def stream(self, chunks: Iterable[bytes | bytearray | memoryview]) -> Iterator[bytes]:
        """The output pieces of a whole input given as ``chunks``, then :meth:`finish`."""
        for chunk in chunks:
            yield from self.feed(chunk)
        self.finish()

    def _check(self) -> None:
        if self._done:
            raise ValueError("decompressor already finished")
        if self._busy:
            raise ValueError("the output of the previous feed() was not consumed")

    def _run(self, data: memoryview) -> Iterator[bytes]:
        yield from self._decode(data)
        self._busy = False

    def _decode(self, data: memoryview) -> Iterator[bytes]:
        raise NotImplementedError

    def _end(self) -> None:
        raise NotImplementedError


class _Passthrough(Decompressor):
    kind = Compression.NONE

    def _decode(self, data: memoryview) -> Iterator[bytes]:
        step = self.max_piece
        if len(data) <= step and isinstance(data.obj, bytes) and len(data.obj) == len(data):
            yield data.obj  # the caller's own bytes: no copy
            return
        for i in range(0, len(data), step):
            yield data[i : i + step].tobytes()

    def _end(self) -> None:
        pass


class _Chained(Decompressor):
    """Members decoded one after another by single-member decompressor objects.

    Each object offers ``decompress(data, max_length)``, ``eof`` and ``unused_data``, and says that it
    holds more output either as zlib does (input left in ``unconsumed_tail``, or a full piece) or as
    bz2/lzma do (``needs_input`` false).
    """

    def __init__(
        self,
        kind: Compression,
        factory: Callable[[], Any],
        errors: tuple[type[BaseException], ...],
        *,
        skip_zeros: bool,
        zlib_style: bool,
        max_piece: int,
    ) -> None:
        super().__init__(max_piece)
        self.kind = kind
        self._factory = factory
        self._errors = errors
        self._skip_zeros = skip_zeros
        self._zlib_style = zlib_style
        self._obj: Any = None  # the member being decoded; None between members
        self._members = 0

    def _decode(self, data: memoryview) -> Iterator[bytes]:
        if self._zlib_style:
            for i in range(0, len(data), _ZLIB_IN_SLICE):
                yield from self._members_of(data[i : i + _ZLIB_IN_SLICE])
        else:
            yield from self._members_of(data)

    def _new_member(self, data: Any) -> Any:
        """Start a member at ``data`` (zeros between members skipped); the data left, or None if none."""
        if self._skip_zeros and self._members and data[0] == 0:
            data = bytes(data).lstrip(b"\0")
            if not data:
                return None
        self._obj = self._factory()
        self._members += 1
        return data

    def _members_of(self, data: Any) -> Iterator[bytes]:
        limit = self.max_piece
        while data:
            if self._obj is None:
                data = self._new_member(data)
                if data is None:
                    return
            obj = self._obj
            while True:
                try:
                    out = obj.decompress(data, limit)
                except self._errors as exc:
                    raise self._error(exc) from exc
                if out:
                    yield out
                if obj.eof:
                    data = obj.unused_data
                    self._obj = None
                    break
                if self._zlib_style:
                    data = obj.unconsumed_tail
                    if not data and len(out) < limit:
                        return
                else:
                    data = b""
                    if obj.needs_input:
                        return

    def _error(self, exc: BaseException) -> DataCorrupted:
        if self.kind is Compression.XZ and "memory usage limit" in str(exc).lower():
            return DataCorrupted(
                f"invalid xz data: the stream needs more than {XZ_MEMLIMIT >> 20} MiB of memory to decompress"
            )
        return DataCorrupted(f"invalid {self.kind.value} data: {exc}")

    def _end(self) -> None:
        if self._obj is not None:
            raise DataCorrupted(f"unexpected EOF: {self.kind.value} stream is truncated")
        if not self._members:
            raise DataCorrupted(f"unexpected EOF: empty {self.kind.value} stream")


# zstd frame walking (RFC 8878 section 3.1)
_Z_MAGIC, _Z_SKIPPABLE_SIZE, _Z_FHD, _Z_BLOCK = range(4)
_Z_FIELD = (4, 4, 1, 3)  # bytes of the field each stage reads
_ZSTD_FRAME_MAGIC = 0xFD2FB528
_ZSTD_DID_BYTES = (0, 1, 2, 4)
_ZSTD_FCS_BYTES = (0, 2, 4, 8)


class _ZstdWalker:
    """Follows the frame and block headers of a zstd stream to cut its input where the decoder's output
    is bounded: a block is decoded only once it is complete and regenerates at most 128 KiB (exactly its
    size field when raw or RLE), so a slice that ends before the header of the block that would pass a
    budget yields at most budget + 256 KiB (one block carried over from the slice before, one started).

    The walker only cuts; the decoding, and every check of the data, is libzstd's.  A frame magic it
    does not know (legacy formats, garbage) or a reserved block type is reported as corrupt.
    """

    def __init__(self) -> None:
        self._stage = _Z_MAGIC
        self._field = b""  # the part of the current field read so far
        self._skip = 0  # bytes to pass over before the stage's field: header rest, block content, checksum
        self._checksum = False

    def cut(self, data: memoryview, budget: int) -> int:
        """The length of the next slice of ``data`` to decode (the walker moves past it)."""
        pos = 0
        n = len(data)
        charged = 0
        while pos < n:
            if self._skip:
                k = min(self._skip, n - pos)
                self._skip -= k
                pos += k
                continue
            stage = self._stage
            size = _Z_FIELD[stage]
            if stage == _Z_BLOCK and charged >= budget and not self._field:
                return pos
            take = min(size - len(self._field), n - pos)
            field = self._field + data[pos : pos + take].tobytes()
            pos += take
            if len(field) < size:
                self._field = field
                break
            self._field = b""
            value = int.from_bytes(field, "little")
            if stage == _Z_MAGIC:
                if value == _ZSTD_FRAME_MAGIC:
                    self._stage = _Z_FHD
                elif value & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_START:
                    self._stage = _Z_SKIPPABLE_SIZE
                else:
                    raise DataCorrupted(f"invalid zstd data: unknown frame magic 0x{value:08x}")
            elif stage == _Z_SKIPPABLE_SIZE:
                self._skip = value
                self._stage = _Z_MAGIC
            elif stage == _Z_FHD:
                single = value >> 5 & 1
                fcs = _ZSTD_FCS_BYTES[value >> 6] or single
                self._skip = (0 if single else 1) + _ZSTD_DID_BYTES[value & 3] + fcs
                self._checksum = bool(value & 4)
                self._stage = _Z_BLOCK
            else:  # a block header: Last_Block, Block_Type, Block_Size
                btype = value >> 1 & 3
                bsize = value >> 3
                if btype == 3:
                    raise DataCorrupted("invalid zstd data: reserved block type")
                charged += bsize if btype < 2 else max(bsize, _ZSTD_BLOCK_MAX)
                self._skip = 1 if btype == 1 else bsize
                if value & 1:  # the last block of the frame
                    self._skip += 4 if self._checksum else 0
                    self._stage = _Z_MAGIC
        return n


class _Zstd(_Chained):
    """zstd frames, one zstandard ``decompressobj`` per frame, fed slices cut by a :class:`_ZstdWalker`
    (zstandard's objects have no ``max_length``: each call returns all the output its input makes)."""

    def __init__(self, max_piece: int) -> None:
        super().__init__(Compression.ZSTD, _zstd_frame, _ZSTD_DCTX_ERRORS, skip_zeros=False,
                         zlib_style=False, max_piece=max_piece)
        self._walker = _ZstdWalker()
        self._budget = max(max_piece - 2 * _ZSTD_BLOCK_MAX, _ZSTD_BLOCK_MAX)

    def _decode(self, data: memoryview) -> Iterator[bytes]:
        limit = self.max_piece
        while data:
            k = self._walker.cut(data, self._budget)
            piece, data = data[:k], data[k:]
            while piece:
                if self._obj is None:
                    self._new_member(piece)
                try:
                    out = self._obj.decompress(piece)
                except self._errors as exc:
                    raise self._error(exc) from exc
                if len(out) <= limit:
                    if out:
                        yield out
                else:  # only when max_piece is below what a slice can hold (~512 KiB)
                    for i in range(0, len(out), limit):
                        yield out[i : i + limit]
                    del out
                if not self._obj.eof:
                    break
                piece = memoryview(self._obj.unused_data)
                self._obj = None


def _gzip_member() -> Any:
    return _gzip_impl.decompressobj(wbits=31)


def _xz_stream() -> Any:
    # FORMAT_AUTO reads .xz and the legacy .lzma ("lzma_alone") format.
    return lzma.LZMADecompressor(format=lzma.FORMAT_AUTO, memlimit=XZ_MEMLIMIT)


_ZSTD_DCTX_ERRORS = (zstandard.ZstdError,)


def _zstd_frame() -> Any:
    # One object per frame (read_across_frames=False) so that `eof` tells where a frame ends and a
    # stream cut inside a frame is seen; frames without a content size are fine in streaming mode.
    return zstandard.ZstdDecompressor().decompressobj()


def decompressor(kind: Compression, *, max_piece: int = MAX_PIECE) -> Decompressor:
    """A new incremental decompressor for ``kind`` whose output pieces hold at most ``max_piece`` bytes."""
    if kind is Compression.NONE:
        return _Passthrough(max_piece)
    if kind is Compression.GZIP:
        return _Chained(kind, _gzip_member, _GZIP_ERRORS, skip_zeros=True, zlib_style=True, max_piece=max_piece)
    if kind is Compression.BZIP2:
        return _Chained(kind, bz2.BZ2Decompressor, (OSError, EOFError, ValueError), skip_zeros=False,
                        zlib_style=False, max_piece=max_piece)
    if kind is Compression.XZ:
        return _Chained(kind, _xz_stream, (lzma.LZMAError, EOFError), skip_zeros=True, zlib_style=False,
                        max_piece=max_piece)
    if kind is Compression.ZSTD:
        return _Zstd(max_piece)
    raise InvalidArgument(f"unsupported compression: {kind!r}")


# --------------------------------------------------------------------------------------------------
# compression


class CompressObject(Protocol):
    """What zlib's, isal's and zstandard's compress objects have in common."""

    def compress(self, data: bytes | bytearray | memoryview, /) -> bytes:
        """Compress a chunk, returning whatever output is ready."""

    def flush(self) -> bytes:
        """End the stream and return its last bytes."""


class Compressor:
    """Incremental compression: :meth:`compress` chunks, then :meth:`flush` once to end the stream."""

    kind: Compression

    def __init__(self, kind: Compression, obj: CompressObject) -> None:
        self.kind = kind
        self._obj = obj
        self._done = False

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """Compress one more chunk; the bytes the codec emits now (often none). ValueError after :meth:`flush`."""
        if self._done:
            raise ValueError("compressor already flushed")
        return self._obj.compress(data)

    def flush(self) -> bytes:
        """End the stream and return its last bytes."""
        if self._done:
            raise ValueError("compressor already flushed")
        self._done = True
        return self._obj.flush()


def _isal_level(level: int) -> int:
    """Map a zlib/gzip level (-1, 0..9) onto python-isal's 0..3."""
    if level < 0:
        return 2  # isal's default, like zlib's -1
    if level == 0:
        return 0
    if level <= 2:
        return 1
    if level <= 6:
        return 2
    return 3


def gzip_compressor(level: int = 1) -> Compressor:
    """A compressor writing one standard gzip member.

    ``level`` is on gzip's scale, ``-1`` (default) or ``0``..``9``.  With python-isal it is mapped onto
    isal's four levels (0 → 0, 1–2 → 1, 3–6 → 2, 7–9 → 3, -1 → 2); with the zlib fallback it is used
    as is.
    """
    if not isinstance(level, int) or isinstance(level, bool) or not -1 <= level <= 9:
        raise InvalidArgument(f"invalid gzip compression level {level!r}: must be -1 to 9")
    obj: CompressObject
    if HAVE_ISAL:
        obj = _gzip_impl.compressobj(_isal_level(level), _gzip_impl.DEFLATED, 31)
    else:  # pragma: no cover
        obj = zlib.compressobj(level, zlib.DEFLATED, 31)
    return Compressor(Compression.GZIP, obj)


def zstd_compressor(level: int = 3) -> Compressor:
    """A compressor writing one zstd frame with a content checksum (its size is not recorded, as in
    any streamed frame)."""
    if (
        not isinstance(level, int)
        or isinstance(level, bool)
        or not -(1 << 17) <= level <= zstandard.MAX_COMPRESSION_LEVEL
    ):
        raise InvalidArgument(
            f"invalid zstd compression level {level!r}: must be at most {zstandard.MAX_COMPRESSION_LEVEL}"
        )
    try:
        obj = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
    except zstandard.ZstdError as exc:
        raise InvalidArgument(f"invalid zstd compression level {level!r}: {exc}") from exc
    return Compressor(Compression.ZSTD, obj)


class DecompressedReader:
    """A read-only file object (for :mod:`tarfile`'s stream mode) over ``chunks``, decompressed: the compression
    is detected from the first bytes, the output comes in pieces of at most :data:`MAX_PIECE`. Subclasses see
    every decompressed piece as it is produced through :meth:`_plain` (to hash, inspect or bound it)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._pieces: Iterator[bytes] | None = None
        self._buf = b""
        self._pos = 0
        self.compression = Compression.NONE

    def _plain(self, data: bytes) -> None:
        """Each decompressed piece, once, before it is read."""

    def _more(self) -> bytes:
        """The next non-empty piece of decompressed data, or b"" at the end."""
        if self._pieces is None:
            head = bytearray()
            for chunk in self._it:
                head += chunk
                if len(head) >= DETECT_BYTES:
                    break
            self.compression = detect(head)
            self._pieces = decompressor(self.compression).stream(itertools.chain((bytes(head),), self._it))
        for out in self._pieces:
            if out:
                self._plain(out)
                return out
        return b""

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` decompressed bytes (``n < 0``: the rest of the current piece, not of the stream); ``b""`` at
        the end of the stream."""
        if self._pos >= len(self._buf):
            self._buf = self._more()
            self._pos = 0
            if not self._buf:
                return b""
        if n < 0:
            n = len(self._buf)
        end = self._pos + n
        if self._pos == 0 and end >= len(self._buf):
            out = self._buf
            self._pos = len(out)
            return out
        out = self._buf[self._pos : end]
        self._pos += len(out)
        return out

    def drain(self) -> None:
        """Read (and so :meth:`_plain`) whatever the reader left: end-of-archive blocks, trailing data."""
        self._buf = b""
        self._pos = 0
        while self._more():
            pass
