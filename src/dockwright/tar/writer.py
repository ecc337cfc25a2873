"""Tar headers as Go's ``archive/tar`` writes them for dockerd, for streaming writers.

This module owns every tar header the project writes: :func:`entry_header` (any entry: USTAR when it can hold
everything, else a PAX extended header first; used by the layer differ and ``docker cp``), :func:`with_owner_names`
(the user and group names ``FileInfoHeader`` adds) and :class:`TarWriter` (the ``docker save`` archive's
headers).  Headers only: the caller writes each header, then the entry's body, then :func:`padding`, and
:func:`end` once at the end; nothing is buffered, so a body can be streamed from anywhere.

What dockerd 25+ writes for ``docker save`` (``archive.Tar`` of its export directory, moby's ``FileInfoHeader``):
headers in USTAR format unless a field does not fit (then a PAX ``x`` header precedes the entry, as Go's writer
does with ``Format = FormatPAX``), uid/gid 0, **empty** uname/gname (``FileInfoHeaderNoLookups``; dockerd 20.10
and skopeo wrote ``root``), modification times truncated to whole seconds, the file type bits in the mode field
(``0100644`` for a file, ``040755`` for a directory), directory names ending in ``/``, and the archive ends with
two zero blocks and no further padding to a record size.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Sequence

from .headers import BLOCK_SIZE

__all__ = ["TarWriter", "BLOCK_SIZE", "entry_header", "with_owner_names", "set_checksum", "format_octal",
           "format_numeric", "split_ustar_path", "pax_record", "to_ascii", "padding", "end"]

_NAME_SIZE = 100
_MAX_OCTAL_11 = 8**11 - 1  # size and mtime fields: 11 octal digits
_MAX_OCTAL_7 = 8**7 - 1  # mode, uid, gid fields: 7 octal digits

_TYPE_REG = b"0"
_TYPE_SYMLINK = b"2"
_TYPE_DIR = b"5"
_TYPE_PAX = b"x"

_S_IFREG = 0o100000
_S_IFDIR = 0o040000
_S_IFLNK = 0o120000


# ---------------------------------------------------------------------------------------------- any entry
def format_octal(value: int, width: int) -> bytes | None:
    """Go's ``formatOctal``: zero-padded, NUL-terminated; None when it does not fit."""
    if value < 0:
        return None
    digits = b"%o" % value
    if len(digits) > width - 1:
        return None
    return digits.rjust(width - 1, b"0") + b"\0"


def format_numeric(value: int, width: int) -> bytes:
    """Octal when it fits, else base-256 (GNU), as Go's ``formatNumeric``."""
    out = format_octal(value, width)
    if out is not None:
        return out
    raw = bytearray((value & ((1 << (8 * width)) - 1)).to_bytes(width, "big"))  # two's complement
    raw[0] |= 0x80
    return bytes(raw)


def split_ustar_path(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's ``splitUSTARPath``: (prefix, suffix) for a long ASCII name, or None if it cannot be split."""
    length = len(name)
    if length <= 100 or not name.isascii():
        return None
    if length > 156:
        length = 156
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    nlen = len(name) - i - 1
    if i <= 0 or nlen > 100 or nlen == 0 or i > 155:
        return None
    return name[:i], name[i + 1 :]


def pax_record(key: bytes, value: bytes) -> bytes:
    """One PAX record, ``"%d %s=%s\n"`` where the length counts itself."""
    size = len(key) + len(value) + 3
    size += len(str(size))
    record = b"%d %s=%s\n" % (size, key, value)
    if len(record) != size:
        size = len(record)
        record = b"%d %s=%s\n" % (size, key, value)
    return record


def set_checksum(block: bytearray) -> None:
    """Write the checksum of a header block into it, as Go does (six octal digits, NUL, space)."""
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


def to_ascii(s: bytes) -> bytes:
    """Go's ``toASCII``: drop the bytes that are not ASCII."""
    return s if s.isascii() else bytes(c for c in s if c < 0x80)


def _ustar_block(name: bytes, prefix: bytes, typeflag: bytes, mode: int, numbers: dict[bytes, bytes], linkname: bytes,
           devmajor: int, devminor: int) -> bytes:
    block = bytearray(BLOCK_SIZE)
    name = name[:100]
    block[0 : len(name)] = name
    block[100:108] = format_numeric(mode, 8)
    block[108:116] = numbers[b"uid"]
    block[116:124] = numbers[b"gid"]
    block[124:136] = numbers[b"size"]
    block[136:148] = numbers[b"mtime"]
    block[156:157] = typeflag
    linkname = linkname[:100]
    block[157 : 157 + len(linkname)] = linkname
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[329:337] = format_numeric(devmajor, 8)
    block[337:345] = format_numeric(devminor, 8)
    prefix = prefix[:155]
    block[345 : 345 + len(prefix)] = prefix
    set_checksum(block)
    return bytes(block)


_ZERO_NUMBERS = {b"uid": b"0000000\0", b"gid": b"0000000\0", b"size": b"00000000000\0", b"mtime": b"00000000000\0"}

# a USTAR block field by field: name, mode, uid, gid, size, mtime, checksum, type, linkname, magic and version,
# uname, gname, devmajor, devminor, prefix, padding
_USTAR = struct.Struct("100s8s8s8s12s12s8s1s100s8s32s32s8s8s155s12x")
_MAGIC = b"ustar\x0000"
_FIXED_SUM = sum(_MAGIC) + 8 * ord(" ")  # what every block adds to its checksum besides its fields


def _plain_block(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                 linkname: bytes, devmajor: int, devminor: int) -> bytes | None:
    """The USTAR block of an entry whose names and numbers fit it as they are (most entries), made at once; None
    when they do not."""
    if (len(name) > _NAME_SIZE or len(linkname) > _NAME_SIZE or not (name + linkname).isascii()
            or max(mode, uid, gid, devmajor, devminor) > _MAX_OCTAL_7 or max(size, mtime) > _MAX_OCTAL_11
            or min(mode, uid, gid, size, mtime, devmajor, devminor) < 0):
        return None
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    dev = b"%07o\0%07o\0" % (devmajor, devminor)
    checksum = _FIXED_SUM + sum(name) + sum(numbers) + sum(dev) + typeflag[0] + sum(linkname)
    return _USTAR.pack(name, numbers[:8], numbers[8:16], numbers[16:24], numbers[24:36], numbers[36:48],
                       b"%06o\0 " % checksum, typeflag, linkname, _MAGIC, b"", b"", dev[:8], dev[8:], b"")


def entry_header(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
            linkname: bytes = b"", devmajor: int = 0, devminor: int = 0,
            xattrs: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The header block(s) of one entry, as Go's ``tar.Writer`` writes a PAX-format header for dockerd:
    plain USTAR when it can hold everything, else a PAX extended header (records sorted by key) before a
    USTAR block holding what fits."""
    if not xattrs:
        block = _plain_block(name, typeflag, mode, uid, gid, size, mtime, linkname, devmajor, devminor)
        if block is not None:
            return block
    pax: dict[bytes, bytes] = {}
    ustar = True
    prefix = b""
    short_name = name
    if len(name) > 100 or not name.isascii():
        pax[b"path"] = name
        split = split_ustar_path(name)
        if split is None:
            ustar = False
        else:
            prefix, short_name = split
    if len(linkname) > 100 or not linkname.isascii():
        pax[b"linkpath"] = linkname
        ustar = False
    numbers = {}
    for key, value, width in ((b"uid", uid, 8), (b"gid", gid, 8), (b"size", size, 12), (b"mtime", mtime, 12)):
        enc = format_octal(value, width)
        if enc is None:
            pax[key] = b"%d" % value
            ustar = False
            enc = _ZERO_NUMBERS[key]
        numbers[key] = enc
    for xname, xvalue in xattrs:
        pax[b"SCHILY.xattr." + xname] = xvalue
        ustar = False
    if ustar:
        return _ustar_block(short_name, prefix, typeflag, mode, numbers, linkname, devmajor, devminor)

    body = b"".join(pax_record(k, pax[k]) for k in sorted(pax))
    i = name.rfind(b"/")
    head, base = name[: i + 1], name[i + 1 :]
    pax_name = (head + b"PaxHeaders.0/" + base).rstrip(b"/")
    ext = _ustar_block(to_ascii(pax_name), b"", b"x", 0, {**_ZERO_NUMBERS, b"size": format_octal(len(body), 12) or b""},
                       b"", 0, 0)
    main = _ustar_block(to_ascii(name), b"", typeflag, mode, numbers, to_ascii(linkname), devmajor, devminor)
    return ext + body + bytes(-len(body) % BLOCK_SIZE) + main


def with_owner_names(header: bytes, uname: str, gname: str) -> bytes:
    """``header`` (from :func:`entry_header`) with the user and group names Go's ``FileInfoHeader`` adds (left
    out when either is longer than 32 bytes or not ASCII)."""
    u, g = uname.encode(), gname.encode()
    if not (u or g) or len(u) > 32 or len(g) > 32 or not (u + g).isascii():
        return header
    block = bytearray(header[-512:])
    block[265:297] = u.ljust(32, b"\0")
    block[297:329] = g.ljust(32, b"\0")
    set_checksum(block)
    return header[:-512] + bytes(block)


def padding(size: int) -> bytes:
    """The zero bytes that complete the last block of a body of ``size`` bytes."""
    return bytes(-size % BLOCK_SIZE)


def end() -> bytes:
    """The end-of-archive marker: two zero blocks."""
    return bytes(2 * BLOCK_SIZE)


# ---------------------------------------------------------------------------------------------- docker save
def _octal(value: int, width: int) -> bytes:
    """Go's ``formatOctal``: zero-padded octal digits and a NUL in a ``width``-byte field."""
    digits = b"%o" % value
    return digits.rjust(width - 1, b"0") + b"\0"


def _field(value: bytes, width: int) -> bytes:
    """Go's ``formatString``: the bytes, NUL-padded (a value that fills the field has no NUL)."""
    return value[:width].ljust(width, b"\0")


def _to_ascii(s: str) -> bytes:
    """Go's ``toASCII``: the name with every non-ASCII (and NUL) character dropped."""
    return bytes(ord(c) for c in s if 0 < ord(c) < 0x80)


class TarWriter:
    """Header blocks for a tar stream written in one pass.

    ``uname``/``gname`` default to empty, as dockerd 25+ writes them; pass ``"root"`` to match older
    dockerd and skopeo byte for byte.
    """

    def __init__(self, *, uname: str = "", gname: str = "") -> None:
        self.uname = uname
        self.gname = gname

    # ------------------------------------------------------------------ public
    def header_file(self, name: str, size: int, *, mode: int = 0o644, mtime: float = 0) -> bytes:
        """The header(s) of a regular file of ``size`` bytes; its body and :meth:`padding` must follow."""
        if size < 0:
            raise ValueError(f"negative size for {name!r}")
        return self._header(name, _TYPE_REG, _S_IFREG | (mode & 0o7777), size, mtime, "")

    def header_dir(self, name: str, *, mode: int = 0o755, mtime: float = 0) -> bytes:
        """The header of a directory (a trailing ``/`` is added to the name)."""
        if not name.endswith("/"):
            name += "/"
        return self._header(name, _TYPE_DIR, _S_IFDIR | (mode & 0o7777), 0, mtime, "")

    def header_symlink(self, name: str, target: str, *, mtime: float = 0) -> bytes:
        """The header of a symbolic link to ``target``."""
        return self._header(name, _TYPE_SYMLINK, _S_IFLNK | 0o777, 0, mtime, target)

    padding = staticmethod(padding)
    end = staticmethod(end)

    # ------------------------------------------------------------------ internals
    def _header(self, name: str, typeflag: bytes, mode: int, size: int, mtime: float, link: str) -> bytes:
        mtime_s = int(mtime)  # truncated to whole seconds, as moby's FileInfoHeader does
        if mtime_s < 0:
            mtime_s = 0
        bname = name.encode()
        blink = link.encode()
        buname = self.uname.encode()
        bgname = self.gname.encode()
        pax: dict[str, str] = {}
        prefix = b""
        if len(bname) > _NAME_SIZE or not bname.isascii():
            split = split_ustar_path(bname)
            if split is None:
                pax["path"] = name
                bname = b""
            else:
                prefix, bname = split
        if len(blink) > _NAME_SIZE or not blink.isascii():
            pax["linkpath"] = link
            blink = b""
        if len(buname) > 32 or not buname.isascii():
            pax["uname"] = self.uname
            buname = b""
        if len(bgname) > 32 or not bgname.isascii():
            pax["gname"] = self.gname
            bgname = b""
        if size > _MAX_OCTAL_11:
            pax["size"] = str(size)
            size_field = 0
        else:
            size_field = size
        if mtime_s > _MAX_OCTAL_11:
            pax["mtime"] = str(mtime_s)
            mtime_s = 0
        out = b""
        if pax:
            # Go: the real name is kept (truncated, ASCII) in the USTAR header, the PAX header file is
            # named <dir>/PaxHeaders.0/<base>; records are sorted by key.
            if "path" in pax:
                bname = _to_ascii(name)[:_NAME_SIZE]
                prefix = b""
            data = b"".join(pax_record(k.encode(), pax[k].encode()) for k in sorted(pax))
            d, f = posixpath.split(name)
            pax_name = _to_ascii(posixpath.normpath(posixpath.join(d, "PaxHeaders.0", f)))[:_NAME_SIZE]
            out = self._block(pax_name, b"", _TYPE_PAX, 0, len(data), 0, b"", b"", b"") + data + self.padding(len(data))
        return out + self._block(bname, prefix, typeflag, mode, size_field, mtime_s, blink, buname, bgname)

    @staticmethod
    def _block(name: bytes, prefix: bytes, typeflag: bytes, mode: int, size: int, mtime: int, link: bytes,
               uname: bytes, gname: bytes) -> bytes:
        blk = bytearray(BLOCK_SIZE)
        blk[0:100] = _field(name, 100)
        blk[100:108] = _octal(mode & _MAX_OCTAL_7, 8)
        blk[108:116] = _octal(0, 8)  # uid
        blk[116:124] = _octal(0, 8)  # gid
        blk[124:136] = _octal(size, 12)
        blk[136:148] = _octal(mtime, 12)
        blk[148:156] = b" " * 8  # checksum placeholder
        blk[156:157] = typeflag
        blk[157:257] = _field(link, 100)
        blk[257:263] = b"ustar\0"
        blk[263:265] = b"00"
        blk[265:297] = _field(uname, 32)
        blk[297:329] = _field(gname, 32)
        blk[329:337] = _octal(0, 8)  # devmajor
        blk[337:345] = _octal(0, 8)  # devminor
        blk[345:500] = _field(prefix, 155)
        set_checksum(blk)
        return bytes(blk)
