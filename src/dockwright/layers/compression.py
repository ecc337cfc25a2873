"""Compression of layer blobs: detection, streaming decompression, compression, media types.

This module owns everything about the compressed wrapping of a layer tar stream:

* :class:`Compression` and :func:`detect`, which recognises a blob by its magic bytes the way moby's
  ``pkg/archive.DetectCompression`` does (gzip, bzip2, xz, zstd including skippable frames; anything
  else is :attr:`Compression.NONE`);
* :func:`decompressor`, an incremental :class:`Decompressor` per kind.  Every kind accepts
  concatenated members/streams/frames (multi-member gzip, pbzip2, concatenated xz streams,
  multi-frame zstd and frames without a content size) and :meth:`Decompressor.finish` raises
  :class:`~dockwright.errors.DataCorrupted` ("unexpected EOF …") when the input stops inside one.
  Corrupt input raises :class:`~dockwright.errors.DataCorrupted` as soon as it is seen.  Zero bytes
  between or after gzip members and xz streams are skipped (gzip(1) and xz(1) accept them); any other
  trailing bytes are an error;
* :func:`gzip_compressor` (python-isal, with :mod:`zlib` as a fallback) and :func:`zstd_compressor`;
* the layer media types and :func:`compression_from_media_type` / :func:`oci_layer_media_type`.
"""

from __future__ import annotations

import bz2
import enum
import lzma
import zlib
from collections.abc import Callable
from typing import Any

import zstandard

from ..errors import DataCorrupted, InvalidArgument

try:  # python-isal is a declared dependency; zlib keeps things working without it.
    from isal import isal_zlib as _gzip_impl

    _GZIP_ERRORS: tuple[type[BaseException], ...] = (_gzip_impl.error, zlib.error)
    HAVE_ISAL = True
except ImportError:  # pragma: no cover - exercised only where isal is missing
    _gzip_impl = zlib  # type: ignore[assignment]
    _GZIP_ERRORS = (zlib.error,)
    HAVE_ISAL = False

__all__ = [
    "Compression",
    "detect",
    "Decompressor",
    "decompressor",
    "Compressor",
    "gzip_compressor",
    "zstd_compressor",
    "HAVE_ISAL",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_LAYER_NONDISTRIBUTABLE",
    "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_FOREIGN_GZIP",
    "MEDIA_TYPE_SUFFIX",
    "compression_from_media_type",
    "oci_layer_media_type",
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


class Decompressor:
    """Incremental decompression of one blob: feed it with :meth:`decompress`, end with :meth:`finish`."""

    kind: Compression

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        """Decompress the next chunk of input; returns whatever output is ready (maybe ``b""``)."""
        raise NotImplementedError

    def finish(self) -> bytes:
        """Declare the end of the input; returns the last output.

        Raises :class:`~dockwright.errors.DataCorrupted` if the input stopped inside a compressed
        stream (or held none at all).  The object cannot be used afterwards.
        """
        raise NotImplementedError


class _Passthrough(Decompressor):
    kind = Compression.NONE

    def __init__(self) -> None:
        self._done = False

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._done:
            raise ValueError("decompressor already finished")
        return bytes(data)

    def finish(self) -> bytes:
        self._done = True
        return b""


class _Chained(Decompressor):
    """Members decoded one after another by single-member decompressor objects.

    Each object must offer ``decompress(data)``, ``eof`` and ``unused_data`` (zlib, bz2, lzma and
    zstandard's ``decompressobj`` all do).
    """

    def __init__(
        self,
        kind: Compression,
        factory: Callable[[], Any],
        errors: tuple[type[BaseException], ...],
        skip_zeros: bool,
    ) -> None:
        self.kind = kind
        self._factory = factory
        self._errors = errors
        self._skip_zeros = skip_zeros
        self._obj: Any = None  # the member being decoded; None between members
        self._members = 0
        self._done = False

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._done:
            raise ValueError("decompressor already finished")
        if not isinstance(data, bytes):
            data = bytes(data)
        out: list[bytes] = []
        while data:
            if self._obj is None:
                if self._skip_zeros and self._members and data[0] == 0:
                    data = data.lstrip(b"\0")
                    if not data:
                        break
                self._obj = self._factory()
                self._members += 1
            try:
                chunk = self._obj.decompress(data)
            except self._errors as exc:
                raise DataCorrupted(f"invalid {self.kind.value} data: {exc}") from exc
            if chunk:
                out.append(chunk)
            if not self._obj.eof:
                break
            data = self._obj.unused_data
            self._obj = None
        return b"".join(out)

    def finish(self) -> bytes:
        if self._done:
            raise ValueError("decompressor already finished")
        self._done = True
        if self._obj is not None:
            raise DataCorrupted(f"unexpected EOF: {self.kind.value} stream is truncated")
        if not self._members:
            raise DataCorrupted(f"unexpected EOF: empty {self.kind.value} stream")
        return b""


def _gzip_member() -> Any:
    return _gzip_impl.decompressobj(wbits=31)


def _xz_stream() -> Any:
    # FORMAT_AUTO reads .xz and the legacy .lzma ("lzma_alone") format.
    return lzma.LZMADecompressor(format=lzma.FORMAT_AUTO)


_ZSTD_DCTX_ERRORS = (zstandard.ZstdError,)


def _zstd_frame() -> Any:
    # One object per frame (read_across_frames=False) so that `eof` tells where a frame ends and a
    # stream cut inside a frame is seen; frames without a content size are fine in streaming mode.
    return zstandard.ZstdDecompressor().decompressobj()


def decompressor(kind: Compression) -> Decompressor:
    """A new incremental decompressor for ``kind``."""
    if kind is Compression.NONE:
        return _Passthrough()
    if kind is Compression.GZIP:
        return _Chained(kind, _gzip_member, _GZIP_ERRORS, skip_zeros=True)
    if kind is Compression.BZIP2:
        return _Chained(kind, bz2.BZ2Decompressor, (OSError, EOFError, ValueError), skip_zeros=False)
    if kind is Compression.XZ:
        return _Chained(kind, _xz_stream, (lzma.LZMAError, EOFError), skip_zeros=True)
    if kind is Compression.ZSTD:
        return _Chained(kind, _zstd_frame, _ZSTD_DCTX_ERRORS, skip_zeros=False)
    raise InvalidArgument(f"unsupported compression: {kind!r}")


# --------------------------------------------------------------------------------------------------
# compression


class Compressor:
    """Incremental compression: :meth:`compress` chunks, then :meth:`flush` once to end the stream."""

    kind: Compression

    def __init__(self, kind: Compression, obj: Any) -> None:
        self.kind = kind
        self._obj = obj
        self._done = False

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
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


# --------------------------------------------------------------------------------------------------
# media types

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = OCI_LAYER_NONDISTRIBUTABLE + "+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = OCI_LAYER_NONDISTRIBUTABLE + "+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

#: The suffix an OCI layer media type carries for each compression it can express.
MEDIA_TYPE_SUFFIX: dict[Compression, str] = {
    Compression.NONE: "",
    Compression.GZIP: "+gzip",
    Compression.ZSTD: "+zstd",
}

_MEDIA_TYPES: dict[str, Compression] = {
    OCI_LAYER: Compression.NONE,
    OCI_LAYER_GZIP: Compression.GZIP,
    OCI_LAYER_ZSTD: Compression.ZSTD,
    OCI_LAYER_NONDISTRIBUTABLE: Compression.NONE,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: Compression.GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: Compression.ZSTD,
    DOCKER_LAYER: Compression.NONE,
    DOCKER_LAYER_GZIP: Compression.GZIP,
    DOCKER_LAYER_FOREIGN_GZIP: Compression.GZIP,
}


def compression_from_media_type(media_type: str) -> Compression:
    """The compression of a layer with this media type (parameters after ``;`` are ignored).

    Raises :class:`~dockwright.errors.InvalidArgument` for anything that is not a known layer type.
    """
    base = media_type.split(";", 1)[0].strip().lower()
    try:
        return _MEDIA_TYPES[base]
    except KeyError:
        raise InvalidArgument(f"unsupported layer media type: {media_type!r}") from None


def oci_layer_media_type(kind: Compression) -> str:
    """The OCI layer media type for a layer compressed with ``kind`` (none, gzip or zstd)."""
    try:
        return OCI_LAYER + MEDIA_TYPE_SUFFIX[kind]
    except KeyError:
        raise InvalidArgument(f"no OCI layer media type for {kind.value} compression") from None
