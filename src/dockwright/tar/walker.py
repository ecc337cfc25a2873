"""The walker of a whole tar archive (``docker load``): each entry's body streamed to a sink of the caller's.

This module owns :class:`TarWalker`, a push parser for an outer archive: USTAR, GNU and PAX headers with their
checksums verified (unsigned or signed), GNU long names and links, PAX ``path``/``linkpath``/``size`` records,
global headers validated and otherwise ignored (as by Go's reader); sparse files are refused.  Unlike
:class:`~.reader.TarInspector` (which holds a layer to extraction's rules) it applies no path rules: the caller
gets every entry's name, type, size and link target and decides.  Its errors are made by the caller's ``fail``
(default :class:`TarFormatError`) from a message and the words Go's ``archive/tar`` would use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..errors import DataCorrupted
from .headers import BLOCK_SIZE, ZERO_BLOCK, cstr, header_checksums

__all__ = ["TarWalker", "EntrySink", "TarFormatError", "FailFn", "GO_INVALID_HEADER", "GO_FIELD_TOO_LONG",
           "GO_UNEXPECTED_EOF", "MAX_META", "EntryFn"]

#: Go's ``archive/tar`` words for a header it refuses, a meta header too long, and a stream cut short.
GO_INVALID_HEADER = "archive/tar: invalid tar header"
GO_FIELD_TOO_LONG = "archive/tar: header field too long"
GO_UNEXPECTED_EOF = "unexpected EOF"
#: Largest PAX / GNU long-name header body accepted.
MAX_META = 1 << 20

_T_HEADER, _T_META, _T_BODY, _T_PAD, _T_ZERO, _T_END = range(6)


class TarFormatError(DataCorrupted):
    """A tar stream :class:`TarWalker` refuses; ``go_error``: what Go's reader says of it (None: no equivalent)."""

    def __init__(self, message: str, go_error: str | None = None) -> None:
        super().__init__(message)
        self.go_error = go_error


#: Makes the exception to raise from a message and Go's words (or None).
FailFn = Callable[[str, str | None], Exception]


class EntrySink(Protocol):
    """Where an entry's body goes: :meth:`write` for each piece, then :meth:`close` (or :meth:`abort`)."""

    def write(self, data: bytes) -> None:
        """The next piece of the body."""

    def close(self) -> None:
        """The body is complete."""

    def abort(self) -> None:
        """The walk failed or was abandoned: drop what was written."""


#: Called for each entry with (name, type flag, size, link target): the sink of its body, or None to skip it.
EntryFn = Callable[[str, int, int, str], EntrySink | None]


def _num(field: bytes, what: str, offset: int, fail: FailFn) -> int:
    """Go's parseNumeric: octal or base-256."""
    if field and field[0] & 0x80:
        body = bytes([field[0] & 0x7F]) + field[1:]
        if field[0] & 0x40:
            raise fail(f"negative {what} in the tar header at offset {offset}", GO_INVALID_HEADER)
        return int.from_bytes(body, "big")
    digits = field.strip(b" \0")
    nul = digits.find(b"\0")
    if nul >= 0:
        digits = digits[:nul]
    if not digits:
        return 0
    if digits.translate(None, b"01234567"):
        raise fail(f"bad {what} field in the tar header at offset {offset}", GO_INVALID_HEADER)
    return int(digits, 8)


class TarWalker:
    """A push parser for a whole archive: :meth:`feed` bytes, :meth:`finish` at the end of input, :meth:`abort`
    to drop the entry being written.  ``on_entry`` is called for every entry (meta headers applied)."""

    def __init__(self, on_entry: EntryFn, fail: FailFn = TarFormatError) -> None:
        self._on_entry = on_entry
        self._fail = fail
        self._state = _T_HEADER
        self._buf = bytearray()
        self._need = BLOCK_SIZE
        self._offset = 0  # of the next byte to consume
        self._body_left = 0
        self._pad_left = 0
        self._sink: EntrySink | None = None
        self._pax: dict[str, str] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._meta_type = b""
        self._entries = 0

    def feed(self, data: bytes) -> None:
        """Walk the next bytes of the archive: headers parsed, bodies handed to their sinks."""
        pos = 0
        n = len(data)
        while pos < n:
            state = self._state
            if state == _T_BODY:
                take = min(self._body_left, n - pos)
                if self._sink is not None:
                    self._sink.write(data[pos : pos + take])
                pos += take
                self._offset += take
                self._body_left -= take
                if not self._body_left:
                    self._end_body()
                continue
            if state == _T_PAD:
                take = min(self._pad_left, n - pos)
                pos += take
                self._offset += take
                self._pad_left -= take
                if not self._pad_left:
                    self._state = _T_HEADER
                    self._need = BLOCK_SIZE
                continue
            if state == _T_END:
                self._offset += n - pos
                return
            # collect self._need bytes into the buffer (a header block or a meta body)
            take = min(self._need - len(self._buf), n - pos)
            self._buf += data[pos : pos + take]
            pos += take
            self._offset += take
            if len(self._buf) < self._need:
                return
            record = bytes(self._buf)
            self._buf = bytearray()
            if state == _T_HEADER:
                self._on_header(record, self._offset - BLOCK_SIZE)
            elif state == _T_ZERO:
                if record != ZERO_BLOCK:
                    # Go: a single zero block followed by data is an invalid header
                    raise self._fail(f"invalid tar header at offset {self._offset - BLOCK_SIZE}",
                                       GO_INVALID_HEADER)
                self._state = _T_END
            else:  # _T_META
                self._on_meta(record)

    def finish(self) -> None:
        """End of input: refuses an archive cut short (as Go, EOF at a block boundary after whole entries is fine)."""
        state = self._state
        if state in (_T_END, _T_ZERO, _T_PAD) and not (state == _T_ZERO and self._buf):
            return
        if state == _T_HEADER and not self._buf:
            if self._pax or self._long_name is not None or self._long_link is not None:
                raise self._fail("unexpected EOF after an extended tar header",
                                   GO_UNEXPECTED_EOF)
            return  # Go: EOF at a block boundary after complete entries is the end
        raise self._fail(f"unexpected EOF at offset {self._offset}: the tar stream is truncated",
                           GO_UNEXPECTED_EOF)

    def abort(self) -> None:
        """Abort the sink of the entry being written, if any."""
        if self._sink is not None:
            self._sink.abort()
            self._sink = None

    # ------------------------------------------------------------------
    def _end_body(self) -> None:
        sink = self._sink
        self._sink = None
        if sink is not None:
            try:
                sink.close()
            except BaseException:
                sink.abort()
                raise
        self._state = _T_PAD if self._pad_left else _T_HEADER
        self._need = BLOCK_SIZE

    def _on_meta(self, body: bytes) -> None:
        kind = self._meta_type
        self._state = _T_PAD if self._pad_left else _T_HEADER
        self._need = BLOCK_SIZE
        if kind in (b"L", b"K"):
            value = cstr(body).decode("utf-8", "surrogateescape")
            if kind == b"L":
                self._long_name = value
            else:
                self._long_link = value
            return
        records = self._parse_pax(body)
        if kind == b"x":
            self._pax = records
        # 'g': global headers are validated and otherwise ignored, as by Go's reader

    def _parse_pax(self, body: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        pos = 0
        while pos < len(body):
            if not body[pos:].strip(b"\0"):
                break
            sp = body.find(b" ", pos)
            if sp < 0 or not body[pos:sp].isdigit():
                raise self._fail("malformed PAX header", GO_INVALID_HEADER)
            length = int(body[pos:sp])
            end = pos + length
            if length < 5 or end > len(body) or body[end - 1 : end] != b"\n":
                raise self._fail("malformed PAX header", GO_INVALID_HEADER)
            key, eq, value = body[sp + 1 : end - 1].partition(b"=")
            if not eq or not key:
                raise self._fail("malformed PAX header", GO_INVALID_HEADER)
            out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
            pos = end
        return out

    def _on_header(self, blk: bytes, offset: int) -> None:
        if blk == ZERO_BLOCK:
            if self._pax or self._long_name is not None or self._long_link is not None:
                raise self._fail(f"extended tar header without an entry at offset {offset}",
                                   GO_INVALID_HEADER)
            self._state = _T_ZERO
            self._need = BLOCK_SIZE
            return
        stored = _num(blk[148:156], "checksum", offset, self._fail)
        unsigned, signed = header_checksums(blk)
        if stored != unsigned:
            if stored != signed:
                raise self._fail(f"tar header checksum mismatch at offset {offset}",
                                   GO_INVALID_HEADER)
        typeflag = blk[156:157]
        size = _num(blk[124:136], "size", offset, self._fail)
        magic = blk[257:263]
        if typeflag in (b"x", b"g", b"L", b"K"):
            if size > MAX_META:
                raise self._fail(f"extended tar header of {size} bytes at offset {offset}",
                                   GO_FIELD_TOO_LONG)
            self._meta_type = typeflag
            self._pad_left = -size % BLOCK_SIZE
            if size:
                self._state = _T_META
                self._need = size
            else:
                self._on_meta(b"")
            return
        name = cstr(blk[0:100])
        if magic == b"ustar\0":
            prefix = cstr(blk[345:500]) if blk[508:512] != b"tar\0" else cstr(blk[345:476])
            if prefix:
                name = prefix + b"/" + name
        linkname = cstr(blk[157:257])
        sname = name.decode("utf-8", "surrogateescape")
        slink = linkname.decode("utf-8", "surrogateescape")
        pax = self._pax
        if pax:
            if pax.get("path"):
                sname = pax["path"]
            if pax.get("linkpath"):
                slink = pax["linkpath"]
            if pax.get("size"):
                if not pax["size"].isdigit():
                    raise self._fail(f"bad PAX size for {sname!r}", GO_INVALID_HEADER)
                size = int(pax["size"])
            if any(k.startswith("GNU.sparse.") for k in pax):
                raise self._fail(f"sparse file {sname!r} is not supported", None)
        if self._long_name is not None:
            sname = self._long_name
        if self._long_link is not None:
            slink = self._long_link
        self._pax = {}
        self._long_name = self._long_link = None
        if typeflag == b"S":
            raise self._fail(f"sparse file {sname!r} is not supported", None)
        if typeflag == b"\0":
            typeflag = b"5" if sname.endswith("/") else b"0"
        if typeflag in (b"1", b"2", b"3", b"4", b"5", b"6"):
            size = 0  # header-only types (Go ignores their size)
        self._entries += 1
        sink = self._on_entry(sname, typeflag[0], size, slink)
        self._sink = sink
        self._body_left = size
        self._pad_left = -size % BLOCK_SIZE
        if size:
            self._state = _T_BODY
        else:
            self._end_body()


