"""Tar headers as Go's ``archive/tar`` writes them for ``docker save``, for a streaming writer.

:class:`TarWriter` makes header blocks only; the caller yields each header, then the entry's body
chunks, then :meth:`TarWriter.padding`, and :meth:`TarWriter.end` once at the end. Nothing is buffered,
so a body can be streamed from anywhere.

What dockerd 25+ writes (``archive.Tar`` of its export directory, moby's ``FileInfoHeader``): headers in
USTAR format unless a field does not fit (then a PAX ``x`` header precedes the entry, as Go's writer does
with ``Format = FormatPAX``), uid/gid 0, **empty** uname/gname (``FileInfoHeaderNoLookups``; dockerd 20.10
and skopeo wrote ``root``), modification times truncated to whole seconds, the file type bits in the mode
field (``0100644`` for a file, ``040755`` for a directory), directory names ending in ``/``, and the
archive ends with two zero blocks and no further padding to a record size.
"""

from __future__ import annotations

import posixpath

__all__ = ["TarWriter", "BLOCK_SIZE"]

BLOCK_SIZE = 512

_NAME_SIZE = 100
_PREFIX_SIZE = 155
_MAX_OCTAL_11 = 8**11 - 1  # size and mtime fields: 11 octal digits
_MAX_OCTAL_7 = 8**7 - 1  # mode, uid, gid fields: 7 octal digits

_TYPE_REG = b"0"
_TYPE_SYMLINK = b"2"
_TYPE_DIR = b"5"
_TYPE_PAX = b"x"

_S_IFREG = 0o100000
_S_IFDIR = 0o040000
_S_IFLNK = 0o120000


def _octal(value: int, width: int) -> bytes:
    """Go's ``formatOctal``: zero-padded octal digits and a NUL in a ``width``-byte field."""
    digits = b"%o" % value
    return digits.rjust(width - 1, b"0") + b"\0"


def _field(value: bytes, width: int) -> bytes:
    """Go's ``formatString``: the bytes, NUL-padded (a value that fills the field has no NUL)."""
    return value[:width].ljust(width, b"\0")


def _pax_record(key: str, value: str) -> bytes:
    """One PAX record, ``"%d %s=%s\\n"`` where the length counts itself."""
    body = f" {key}={value}\n".encode()
    size = len(body) + 1
    while len(str(size)) + len(body) != size:
        size = len(str(size)) + len(body)
    return str(size).encode() + body


def _to_ascii(s: str) -> bytes:
    """Go's ``toASCII``: the name with every non-ASCII (and NUL) character dropped."""
    return bytes(ord(c) for c in s if 0 < ord(c) < 0x80)


def _split_ustar_path(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's ``splitUSTARPath``: (prefix, suffix) for a long ASCII name, or None if it cannot be split."""
    length = len(name)
    if length <= _NAME_SIZE or not name.isascii():
        return None
    if length > _PREFIX_SIZE + 1:
        length = _PREFIX_SIZE + 1
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    nlen = len(name) - i - 1
    if i <= 0 or nlen > _NAME_SIZE or nlen == 0 or i > _PREFIX_SIZE:
        return None
    return name[:i], name[i + 1 :]


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

    @staticmethod
    def padding(size: int) -> bytes:
        """The zero bytes that complete the last block of a body of ``size`` bytes."""
        return bytes(-size % BLOCK_SIZE)

    @staticmethod
    def end() -> bytes:
        """The end-of-archive marker: two zero blocks."""
        return bytes(2 * BLOCK_SIZE)

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
            split = _split_ustar_path(bname)
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
            data = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
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
        chksum = sum(blk)
        blk[148:156] = _octal(chksum, 7) + b" "
        return bytes(blk)
