"""Streaming inspection of a layer's tar stream, without unpacking or buffering it.

This module owns :class:`TarInspector`, which is fed the (decompressed) bytes of a layer in chunks of
any size while the layer is imported, and :class:`TarSummary`, what it says at the end.

It reads tar headers itself, the way Go's ``archive/tar`` does (the reader dockerd and containerd use):
V7, ustar, star, GNU and PAX headers with checksum verification (unsigned or signed), base-256
numbers, GNU long names/links (``L``/``K``), PAX extended (``x``) and global (``g``) records
(``path``, ``linkpath``, ``size``; a global header is validated but, as in Go, not applied to later
entries), the old GNU sparse format (``S`` with its extension blocks) and the PAX GNU sparse formats
0.0, 0.1 and 1.0.  File bodies are skipped by arithmetic and never copied.

End of archive: two zero blocks, after which anything (trailing garbage) is ignored but still counted
in :attr:`TarSummary.tar_size`; like Go, EOF at a block boundary after complete entries (also after a
single zero block, or inside the padding of the last body) is a clean end.  A header with a bad
checksum, a zero block followed by a non-zero block, EOF inside a header or a body, or extended headers
with no entry after them raise :class:`~dockwright.errors.DataCorrupted`.

Security, because the layer is later extracted: entries whose cleaned path climbs above the root
(``../``), hardlinks whose target does, a non-directory entry that would replace the root itself, and
cleaned paths longer than ``PATH_MAX`` raise :class:`~dockwright.errors.DataCorrupted` naming the
entry.  Absolute names are made relative as dockerd does.  Symlink targets are not checked here (but one
longer than ``PATH_MAX - 1`` bytes, which ``symlink(2)`` refuses, is).

Everything extraction (:class:`~dockwright.layers.apply.TarExtractor`, which is fed through this inspector
too) would refuse later is refused here, while the layer streams in, so that a layer that cannot be unpacked
is never stored (:func:`check_entry_fields`): a path component longer than ``NAME_MAX`` (the kernel's "file
name too long"), header number fields (mode, uid, gid, mtime, device numbers) or PAX numbers (``uid``,
``gid``, ``size``, ``mtime``, ``atime``, ``ctime``) that Go's ``archive/tar`` cannot parse, and owners that
``lchown(2)`` cannot take (:func:`valid_owner_id`).  With ``links_in_archive`` (layers: dockerd applies a
layer into an empty directory), a hardlink must name an entry the archive made before it, that is not a
directory, reached without going through a symlink.

:attr:`TarSummary.diff_size` is what dockerd's overlay2 driver reports for the layer, i.e. Go's
``directory.Size`` over the unpacked diff directory (see moby ``pkg/archive.Unpack`` with the overlay
whiteout converter): the apparent size of every non-directory with a non-zero size, each hardlinked
inode once, a symlink counting the length of its target, whiteouts ``.wh.<name>`` becoming 0/0
character devices (size 0) and ``.wh..wh..opq`` an xattr (nothing).  A later entry for the same path
replaces the earlier one, and a non-directory replacing a directory removes everything under it, as
extraction does.  Entries of types dockerd cannot extract (volume labels, multi-volume parts, …) count
as entries but add nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import DataCorrupted

__all__ = ["TarInspector", "TarSummary", "BLOCK_SIZE", "PATH_MAX", "NAME_MAX", "clean_components",
           "valid_owner_id", "parse_pax_time", "check_entry_fields"]

BLOCK_SIZE = 512
#: Longest cleaned entry path accepted; the kernel refuses longer paths, so dockerd cannot extract them.
PATH_MAX = 4096
#: Longest path component the kernel takes (bytes).
NAME_MAX = 255

_ZERO_BLOCK = bytes(BLOCK_SIZE)
_HIGH_BYTES = bytes(range(128, 256))
_OCTAL_DIGITS = b"01234567"
_PAX_INT = re.compile(rb"[+-]?[0-9]+")
_INT64_LIMIT = 1 << 63

# reader states
_HEADER = 0  # collecting a 512-byte header block
_ZERO = 1  # saw one zero block, collecting the next block
_META = 2  # collecting the body of an x/g/L/K header
_SPARSE = 3  # collecting an old-GNU sparse extension block
_END = 4  # after the end-of-archive marker: everything is ignored

# type flags
_REG = 0x30  # '0'
_LINK = 0x31  # '1'
_SYMLINK = 0x32  # '2'
_CHAR = 0x33  # '3'
_BLOCK = 0x34  # '4'
_DIR = 0x35  # '5'
_FIFO = 0x36  # '6'
_CONT = 0x37  # '7'
_REGA = 0x00  # '\0'
_GNU_SPARSE = 0x53  # 'S'
_PAX_LOCAL = 0x78  # 'x'
_PAX_GLOBAL = 0x67  # 'g'
_GNU_LONGNAME = 0x4C  # 'L'
_GNU_LONGLINK = 0x4B  # 'K'
_HEADER_ONLY = frozenset((_LINK, _SYMLINK, _CHAR, _BLOCK, _DIR, _FIFO))
_REGULAR = frozenset((_REG, _CONT, _GNU_SPARSE))
_DEVICES = frozenset((_CHAR, _BLOCK, _FIFO))

_WHITEOUT_PREFIX = b".wh."
_WHITEOUT_OPAQUE = b".wh..wh..opq"

# Budget of tree nodes: generous for real layers, bounds memory for hostile ones (deep paths that
# would make every entry create thousands of implicit directories).
_NODE_BUDGET_BASE = 1 << 16
_NODE_BUDGET_BYTES_PER_NODE = 128


@dataclass(frozen=True)
class TarSummary:
    """What a layer's tar stream holds.

    ``entries``: the number of file system entries (meta headers such as PAX, GNU long names and global
    headers are not entries).  ``diff_size``: the size dockerd (overlay2) reports for the layer.
    ``tar_size``: every byte fed, trailing garbage included.
    """

    entries: int
    diff_size: int
    tar_size: int


class _Inode:
    """A regular file or symlink with more than one name."""

    __slots__ = ("size", "nlink")

    def __init__(self, size: int, nlink: int) -> None:
        self.size = size
        self.nlink = nlink


class _BadNumber(Exception):
    pass


def _cstr(field: bytes) -> bytes:
    i = field.find(b"\0")
    return field if i < 0 else field[:i]


def _parse_octal(field: bytes) -> int:
    digits = field.strip(b" \0")
    if not digits:
        return 0
    digits = _cstr(digits)
    if not digits or digits.translate(None, _OCTAL_DIGITS):
        raise _BadNumber
    value = int(digits, 8)
    if value >= _INT64_LIMIT:
        raise _BadNumber
    return value


def _parse_numeric(field: bytes) -> int:
    """A tar number field: octal, or base-256 when the high bit is set (Go's ``parseNumeric``)."""
    first = field[0]
    if first & 0x80:
        if first & 0x40:
            inverted = bytes(b ^ 0xFF for b in field)
            value = int.from_bytes(bytes((inverted[0] & 0x7F,)) + inverted[1:], "big")
            if value >= _INT64_LIMIT:
                raise _BadNumber
            return -value - 1
        value = int.from_bytes(bytes((first & 0x7F,)) + field[1:], "big")
        if value >= _INT64_LIMIT:
            raise _BadNumber
        return value
    return _parse_octal(field)


def _parse_pax_int(value: bytes) -> int:
    if not _PAX_INT.fullmatch(value):
        raise _BadNumber
    n = int(value)
    if not -_INT64_LIMIT <= n < _INT64_LIMIT:
        raise _BadNumber
    return n


_PAX_TIME = re.compile(rb"([+-]?[0-9]+)(?:\.([0-9]*))?")
_PAX_NUMBER_KEYS = (b"uid", b"gid", b"size")
_PAX_TIME_KEYS = (b"mtime", b"atime", b"ctime")
_MAX_OWNER_ID = (1 << 32) - 2  # (uid_t)-1 means "leave unchanged" to lchown; Python refuses it as an id


def parse_pax_time(value: bytes) -> int:
    """A PAX time record in nanoseconds, as Go's ``parsePAXTime`` reads it (``[+-]seconds[.fraction]``, seconds
    within int64); :class:`ValueError` for anything else (``inf``, ``1e9``, ``.5``, garbage)."""
    m = _PAX_TIME.fullmatch(value)
    if m is None:
        raise ValueError(value)
    secs = int(m.group(1))
    if not -_INT64_LIMIT <= secs < _INT64_LIMIT:
        raise ValueError(value)
    frac = (m.group(2) or b"")[:9].ljust(9, b"0")
    ns = int(frac)
    return secs * 1_000_000_000 + (-ns if m.group(1).startswith(b"-") else ns)


def valid_owner_id(n: int) -> bool:
    """Whether ``lchown(2)`` (through Python's ``os.chown``, which the extractor uses) takes ``n`` as a uid or
    gid: 0 … 2**32-2, or -1 (unchanged)."""
    return n == -1 or 0 <= n <= _MAX_OWNER_ID


def check_entry_fields(blk: bytes, pax: dict[bytes, bytes] | None, name: bytes) -> None:
    """Refuse an entry whose header numbers or PAX numbers do not parse (Go's ``archive/tar`` fails the whole
    archive with ``ErrHeader``; Python's ``tarfile``, which extracts, fails on the header fields and turns bad
    PAX numbers into nonsense), or whose owner ``lchown`` cannot take. ``blk`` is the entry's raw header."""
    fields = {}
    for label, lo, hi in (("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124), ("mtime", 136, 148),
                          ("devmajor", 329, 337), ("devminor", 337, 345)):
        try:
            fields[label] = _parse_numeric(blk[lo:hi])
        except _BadNumber:
            raise DataCorrupted(f"invalid tar header for {_show(name)}: bad {label} field "
                                f"{_show(_cstr(blk[lo:hi]))}") from None
    if pax:
        for key in _PAX_NUMBER_KEYS + _PAX_TIME_KEYS:
            value = pax.get(key)
            if not value:
                continue  # an empty record keeps the header's value (Go)
            try:
                number = _parse_pax_int(value) if key in _PAX_NUMBER_KEYS else parse_pax_time(value)
            except (_BadNumber, ValueError):
                raise DataCorrupted(f"invalid tar header for {_show(name)}: bad PAX {key.decode()} record "
                                    f"{_show(value)}") from None
            if key in (b"uid", b"gid"):
                fields[key.decode()] = number
    for label in ("uid", "gid"):
        if not valid_owner_id(fields[label]):
            raise DataCorrupted(f"invalid tar header for {_show(name)}: {label} {fields[label]} is out of range "
                                f"(0 to {_MAX_OWNER_ID})")


def _show(name: bytes) -> str:
    text = name.decode("utf-8", "backslashreplace")
    if len(text) > 200:
        text = text[:200] + "…"
    return repr(text)


def _describe(name: bytes, link: bytes | None) -> str:
    if link is None:
        return f"tar entry {_show(name)}"
    return f"hardlink {_show(name)} -> {_show(link)}"


def clean_components(name: bytes) -> list[bytes] | None:
    """The components of a tar entry's ``name`` cleaned like Go's ``filepath.Clean`` below the root (an
    absolute name is taken as relative to it), or None if a relative name climbs above the root."""
    absolute = name.startswith(b"/")
    out: list[bytes] = []
    for part in name.split(b"/"):
        if not part or part == b".":
            continue
        if part == b"..":
            if out:
                out.pop()
            elif not absolute:
                return None
            continue
        out.append(part)
    return out


class TarInspector:
    """Push-based tar reader: :meth:`feed` it chunks of any size, then :meth:`close` it.

    ``max_header_bytes`` bounds the body of each PAX / GNU long-name header (Go's limit is 1 MiB).
    Once an error has been raised, every later call raises it again.  ``links_in_archive`` (layers): a
    hardlink must name a non-directory entry made earlier by the archive, not through one of its symlinks.
    """

    def __init__(self, *, max_header_bytes: int = 1 << 20, links_in_archive: bool = False) -> None:
        if max_header_bytes < BLOCK_SIZE:
            raise ValueError("max_header_bytes must be at least one block")
        self._links_in_archive = links_in_archive
        self._symlinks: set[tuple[bytes, ...]] = set()  # where the archive made symlinks (for messages)
        self._max_meta = max_header_bytes
        self._fed = 0  # bytes fed so far
        self._buf = bytearray()  # the part of the current record seen so far
        self._need = BLOCK_SIZE  # length of the current record
        self._state = _HEADER
        self._body_left = 0  # bytes of the current entry's body still to skip
        self._pad_left = 0  # padding after that body
        self._error: DataCorrupted | None = None
        self._summary: TarSummary | None = None
        # the entry being read, for messages
        self._entry_name = b""
        # pending meta headers
        self._meta_type = 0
        self._meta_pending = False
        self._pax: dict[bytes, bytes] | None = None
        self._long_name = b""
        self._long_link = b""
        # old GNU sparse: body to skip once the extension blocks are read
        self._sparse_body = 0
        # results
        self._entries = 0
        self._size = 0
        self._root: dict[bytes, object] = {}
        self._nodes = 0
        # subclasses: the raw header of the entry being applied, its PAX records, and a callable that
        # is given the entry's body as it streams past (set in ``_apply``; None: the body is skipped)
        self._hdr = b""
        self._hdr_pax: dict[bytes, bytes] | None = None
        self._sink: Any = None

    # ------------------------------------------------------------------ public

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Inspect the next chunk of the stream."""
        if self._error is not None:
            raise self._error
        if self._summary is not None:
            raise ValueError("TarInspector already closed")
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        n = len(mv)
        base = self._fed
        self._fed += n
        pos = 0
        try:
            while pos < n:
                if self._body_left:
                    k = min(self._body_left, n - pos)
                    if self._sink is not None:
                        self._sink(mv[pos : pos + k])
                    self._body_left -= k
                    pos += k
                    continue
                if self._pad_left:
                    k = min(self._pad_left, n - pos)
                    self._pad_left -= k
                    pos += k
                    continue
                if self._state == _END:
                    break
                need = self._need
                buf = self._buf
                if not buf and n - pos >= need:
                    record = mv[pos : pos + need].tobytes()
                    pos += need
                else:
                    take = min(need - len(buf), n - pos)
                    buf += mv[pos : pos + take]
                    pos += take
                    if len(buf) < need:
                        break
                    record = bytes(buf)
                    buf.clear()
                self._dispatch(record, base + pos - need)
        except DataCorrupted as exc:
            self._error = exc
            raise

    def close(self) -> TarSummary:
        """End of input: the summary, or :class:`~dockwright.errors.DataCorrupted` if truncated."""
        if self._error is not None:
            raise self._error
        if self._summary is not None:
            return self._summary
        try:
            self._check_end()
        except DataCorrupted as exc:
            self._error = exc
            raise
        self._summary = TarSummary(entries=self._entries, diff_size=self._size, tar_size=self._fed)
        self._root = {}
        return self._summary

    # ------------------------------------------------------------------ reading

    def _check_end(self) -> None:
        state = self._state
        if state == _END:
            return
        if self._body_left:
            raise DataCorrupted(
                f"unexpected EOF: tar stream truncated in the body of {_show(self._entry_name)} "
                f"({self._body_left} bytes missing)"
            )
        if state == _META:
            raise DataCorrupted("unexpected EOF: tar stream truncated in an extended header")
        if state == _SPARSE:
            raise DataCorrupted(
                f"unexpected EOF: tar stream truncated in the sparse map of {_show(self._entry_name)}"
            )
        if self._buf:
            raise DataCorrupted(
                f"unexpected EOF: tar stream truncated in a header block at offset {self._fed - len(self._buf)}"
            )
        if self._meta_pending:
            raise DataCorrupted("unexpected EOF: tar stream ends after an extended header, without its entry")

    def _dispatch(self, record: bytes, offset: int) -> None:
        state = self._state
        if state == _HEADER:
            self._on_header(record, offset)
        elif state == _META:
            self._state = _HEADER
            self._pad_left = -self._need % BLOCK_SIZE
            self._need = BLOCK_SIZE
            self._on_meta(record, offset)
        elif state == _ZERO:
            if record != _ZERO_BLOCK:
                raise DataCorrupted(f"invalid tar header at offset {offset}: zero block followed by data")
            self._state = _END
        else:  # _SPARSE
            if not record[504]:
                self._state = _HEADER
                self._body_left = self._sparse_body
                self._pad_left = -self._sparse_body % BLOCK_SIZE

    def _on_header(self, blk: bytes, offset: int) -> None:
        if blk == _ZERO_BLOCK:
            if self._meta_pending:
                raise DataCorrupted(f"invalid tar header at offset {offset}: extended header without an entry")
            self._state = _ZERO
            return

        # Checksum (unsigned, or signed as some old tars wrote it) and format.
        try:
            stored = _parse_octal(blk[148:156])
        except _BadNumber:
            raise DataCorrupted(f"invalid tar header at offset {offset}: bad checksum field") from None
        unsigned = sum(blk) - sum(blk[148:156]) + 8 * 32
        if stored != unsigned:
            high = BLOCK_SIZE - 8 - len((blk[:148] + blk[156:]).translate(None, _HIGH_BYTES))
            if stored != unsigned - 256 * high:
                raise DataCorrupted(f"invalid tar header at offset {offset}: checksum mismatch")
        magic = blk[257:263]
        if magic == b"ustar\0":
            fmt = "star" if blk[508:512] == b"tar\0" else "ustar"
        elif magic == b"ustar " and blk[263:265] == b" \0":
            fmt = "gnu"
        else:
            fmt = "v7"

        typeflag = blk[156]
        name = _cstr(blk[0:100])
        try:
            size = _parse_numeric(blk[124:136])
        except _BadNumber:
            raise DataCorrupted(f"invalid tar header at offset {offset}: bad size field") from None

        # Meta headers: their body is collected and applies to the next entry.
        if typeflag in (_PAX_LOCAL, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
            if size < 0:
                raise DataCorrupted(f"invalid tar header at offset {offset}: negative size")
            if size > self._max_meta:
                raise DataCorrupted(
                    f"invalid tar header at offset {offset}: extended header of {size} bytes is too long"
                )
            self._meta_type = typeflag
            if size:
                self._state = _META
                self._need = size
            else:
                self._on_meta(b"", offset)
            return

        if fmt == "ustar":
            prefix = _cstr(blk[345:500])
        elif fmt == "star":
            prefix = _cstr(blk[345:476])
        elif fmt == "gnu":
            prefix = b""
            try:  # pre-Go1.8 writers put a ustar prefix into GNU headers; Go reads it back
                if blk[345]:
                    _parse_numeric(blk[345:357])
                if blk[357]:
                    _parse_numeric(blk[357:369])
            except _BadNumber:
                candidate = _cstr(blk[345:500])
                if candidate.isascii():
                    prefix = candidate
        else:
            prefix = b""
        if prefix:
            name = prefix + b"/" + name
        linkname = _cstr(blk[157:257])

        # Apply pending meta headers (Go: PAX records, then GNU long names override them).
        pax = self._pax
        if pax:
            value = pax.get(b"path")
            if value:
                name = value
            value = pax.get(b"linkpath")
            if value:
                linkname = value
            value = pax.get(b"size")
            if value:
                try:
                    size = _parse_pax_int(value)
                except _BadNumber:
                    raise DataCorrupted(f"invalid PAX size {value!r} for the tar entry at offset {offset}") from None
        if self._long_name:
            name = self._long_name
        if self._long_link:
            linkname = self._long_link
        self._pax = None
        self._long_name = self._long_link = b""
        self._meta_pending = False

        if typeflag == _REGA:
            typeflag = _DIR if name.endswith(b"/") else _REG

        body = 0 if typeflag in _HEADER_ONLY else size
        if body < 0:
            raise DataCorrupted(f"invalid tar header for {_show(name)}: negative size")
        logical = body
        sparse_ext = False
        if typeflag == _GNU_SPARSE:
            if fmt != "gnu":
                raise DataCorrupted(f"invalid tar header for {_show(name)}: sparse entry in a non-GNU header")
            try:
                logical = _parse_numeric(blk[483:495])
            except _BadNumber:
                raise DataCorrupted(f"invalid tar header for {_show(name)}: bad sparse size") from None
            sparse_ext = blk[482] != 0
        elif pax:
            name, logical = self._pax_sparse(pax, name, logical)
        if logical < 0:
            raise DataCorrupted(f"invalid tar header for {_show(name)}: negative size")

        check_entry_fields(blk, pax, name)
        self._entry_name = name
        self._entries += 1
        self._hdr, self._hdr_pax, self._sink = blk, pax, None
        self._apply(typeflag, name, linkname, logical)
        if sparse_ext or logical != body:
            self._sink = None  # a sparse map is not the file's contents

        if sparse_ext:
            self._state = _SPARSE
            self._sparse_body = body
        else:
            self._body_left = body
            self._pad_left = -body % BLOCK_SIZE

    @staticmethod
    def _pax_sparse(pax: dict[bytes, bytes], name: bytes, size: int) -> tuple[bytes, int]:
        """Name and logical size of a PAX GNU sparse file (Go's ``readGNUSparsePAXHeaders``)."""
        major = pax.get(b"GNU.sparse.major", b"")
        minor = pax.get(b"GNU.sparse.minor", b"")
        if (major, minor) in ((b"0", b"0"), (b"0", b"1"), (b"1", b"0")):
            pass
        elif major or minor:
            return name, size  # unknown sparse version: a plain file
        elif not pax.get(b"GNU.sparse.map"):
            return name, size  # not sparse
        sparse_name = pax.get(b"GNU.sparse.name")
        if sparse_name:
            name = sparse_name
        value = pax.get(b"GNU.sparse.size") or pax.get(b"GNU.sparse.realsize")
        if value:
            try:
                size = _parse_pax_int(value)
            except _BadNumber:
                raise DataCorrupted(f"invalid GNU sparse size {value!r} for {_show(name)}") from None
        return name, size

    def _on_meta(self, body: bytes, offset: int) -> None:
        kind = self._meta_type
        if kind == _GNU_LONGNAME or kind == _GNU_LONGLINK:
            value = _cstr(body)
            if kind == _GNU_LONGNAME:
                self._long_name = value
            else:
                self._long_link = value
            self._meta_pending = True
            return
        records = self._parse_pax(body, offset)
        if kind == _PAX_LOCAL:
            self._pax = records
            self._meta_pending = True
        else:
            # A global header is an entry of its own to Go's reader: it ends any pending meta headers
            # and, in Go, is not applied to the entries that follow.  dockerd ignores it.
            self._pax = None
            self._long_name = self._long_link = b""
            self._meta_pending = False

    @staticmethod
    def _parse_pax(body: bytes, offset: int) -> dict[bytes, bytes]:
        records: dict[bytes, bytes] = {}
        pos = 0
        n = len(body)
        while pos < n:
            if body[pos] == 0 and not body[pos:].strip(b"\0"):
                break  # NUL padding inside the declared size: tolerated
            space = body.find(b" ", pos)
            if space < 0:
                raise DataCorrupted(f"invalid PAX header at offset {offset}: bad record length")
            length_text = body[pos:space]
            if length_text.startswith(b"+"):
                length_text = length_text[1:]
            if not length_text.isdigit():
                raise DataCorrupted(f"invalid PAX header at offset {offset}: bad record length")
            length = int(length_text)
            end = pos + length
            if length < 5 or end > n or end <= space + 1 or body[end - 1] != 0x0A:
                raise DataCorrupted(f"invalid PAX header at offset {offset}: malformed record")
            record = body[space + 1 : end - 1]
            eq = record.find(b"=")
            if eq <= 0:
                raise DataCorrupted(f"invalid PAX header at offset {offset}: malformed record")
            key = record[:eq]
            value = record[eq + 1 :]
            if key in (b"path", b"linkpath", b"uname", b"gname"):
                if b"\0" in value:
                    raise DataCorrupted(f"invalid PAX header at offset {offset}: NUL in {key.decode()}")
            elif b"\0" in key:
                raise DataCorrupted(f"invalid PAX header at offset {offset}: NUL in a key")
            if key in (b"GNU.sparse.offset", b"GNU.sparse.numbytes"):
                records[b"GNU.sparse.map"] = b"0.0"  # sparse format 0.0: Go folds these into a map
            else:
                records[key] = value
            pos = end
        return records

    # ------------------------------------------------------------------ the unpacked tree

    @staticmethod
    def _clean(name: bytes, what: bytes, link: bytes | None = None) -> list[bytes]:
        """Path components of ``name`` cleaned like Go's ``filepath.Clean`` below the layer root.

        ``what`` and ``link`` only serve the error message: ``what`` is the entry's name and ``link``,
        when given, the hardlink target being cleaned.
        """
        out = clean_components(name)
        if out is None:
            raise DataCorrupted(f"{_describe(what, link)} escapes the layer root")
        if len(name) > PATH_MAX - 1 and sum(map(len, out)) + len(out) - 1 > PATH_MAX - 1:
            raise DataCorrupted(f"{_describe(what, link)} has a path longer than {PATH_MAX - 1} bytes")
        if len(name) > NAME_MAX:
            longest = max(map(len, out), default=0)
            if longest > NAME_MAX:
                raise DataCorrupted(f"{_describe(what, link)} has a name of {longest} bytes: longer than "
                                    f"{NAME_MAX} (NAME_MAX): file name too long")
        return out

    def _new_node(self) -> None:
        self._nodes += 1
        if self._nodes > _NODE_BUDGET_BASE + self._fed // _NODE_BUDGET_BYTES_PER_NODE:
            raise DataCorrupted(
                f"tar entry {_show(self._entry_name)}: the layer creates too many directories for its size"
            )

    def _parent(self, comps: list[bytes]) -> dict[bytes, object] | None:
        """The directory that will hold ``comps[-1]``, made as ``MkdirAll`` would; None if blocked."""
        cur = self._root
        for i in range(len(comps) - 1):
            part = comps[i]
            nxt = cur.get(part)
            if nxt is None:
                self._new_node()
                nxt = {}
                cur[part] = nxt
            elif type(nxt) is not dict:
                return None  # a file or symlink is in the way
            cur = nxt  # type: ignore[assignment]
        return cur

    def _find(self, comps: list[bytes]) -> tuple[dict[bytes, object], bytes] | None:
        cur = self._root
        for i in range(len(comps) - 1):
            nxt = cur.get(comps[i])
            if type(nxt) is not dict:
                return None
            cur = nxt  # type: ignore[assignment]
        if comps[-1] not in cur:
            return None
        return cur, comps[-1]

    def _drop(self, node: object) -> None:
        """Remove what ``node`` contributes (a whole subtree for a directory)."""
        stack = [node]
        while stack:
            node = stack.pop()
            kind = type(node)
            if kind is int:
                self._size -= node  # type: ignore[operator]
            elif kind is dict:
                stack.extend(node.values())  # type: ignore[attr-defined]
            else:
                inode: _Inode = node  # type: ignore[assignment]
                inode.nlink -= 1
                if not inode.nlink:
                    self._size -= inode.size

    def _check_link_target(self, comps: list[bytes], target: list[bytes], name: bytes, linkname: bytes) -> None:
        """A layer's hardlink must name what the layer made before it (extraction links inside the layer's own
        directory): a non-directory, reached through directories only."""
        what = _describe(name, linkname)
        if not target:
            raise DataCorrupted(f"{what} points at the layer root")
        if target[: len(comps)] == comps:  # the link replaces its own target (or a directory holding it)
            raise DataCorrupted(f"{what}: the target is not in the layer (the link replaces it)")
        cur = self._root
        for i, part in enumerate(target[:-1]):
            nxt = cur.get(part)
            if type(nxt) is not dict:
                if nxt is not None and tuple(target[: i + 1]) in self._symlinks:
                    raise DataCorrupted(f"{what} goes through the symlink {_show(b'/'.join(target[: i + 1]))} "
                                        f"of the layer")
                raise DataCorrupted(f"{what}: the target is not in the layer")
            cur = nxt  # type: ignore[assignment]
        node = cur.get(target[-1])
        if node is None:
            raise DataCorrupted(f"{what}: the target is not in the layer")
        if type(node) is dict:
            raise DataCorrupted(f"{what}: the target is a directory")

    def _apply(self, typeflag: int, name: bytes, linkname: bytes, size: int) -> None:
        """Account for one entry as ``archive.Unpack`` with the overlay whiteout converter would."""
        comps = self._clean(name, name)
        if typeflag == _LINK:
            target = self._clean(linkname.lstrip(b"/"), name, linkname)
        if not comps:
            if typeflag == _DIR:
                return
            raise DataCorrupted(f"tar entry {_show(name)} would replace the layer root")
        if typeflag == _LINK and self._links_in_archive:
            self._check_link_target(comps, target, name, linkname)
        elif typeflag == _SYMLINK and len(linkname) > PATH_MAX - 1:
            raise DataCorrupted(f"symlink {_show(name)} has a target of {len(linkname)} bytes: longer than "
                                f"{PATH_MAX - 1} (PATH_MAX)")
        if self._symlinks:
            self._symlinks.discard(tuple(comps))
        if typeflag == _SYMLINK:
            self._symlinks.add(tuple(comps))
        if typeflag not in _REGULAR and typeflag not in _DEVICES and typeflag not in (_LINK, _SYMLINK, _DIR):
            return  # dockerd cannot extract these ("unhandled tar header type"); nothing to count
        base = comps[-1]
        parent = self._parent(comps)

        if base.startswith(_WHITEOUT_PREFIX):
            if parent is None or base == _WHITEOUT_OPAQUE:
                return  # opaque marker: an xattr on the (already made) parent
            hidden = base[len(_WHITEOUT_PREFIX) :]
            if not hidden:
                return
            old = parent.get(hidden)
            if old is not None:
                self._drop(old)
            parent[hidden] = 0  # a 0/0 character device
            return

        if parent is None:
            # Below a file or symlink: dockerd writes through the symlink (or fails); count the data.
            if typeflag in _REGULAR:
                self._size += size
            elif typeflag == _SYMLINK:
                self._size += len(linkname)
            return

        old = parent.get(base)
        if typeflag == _DIR:
            if type(old) is dict:
                return  # directories merge
            if old is not None:
                self._drop(old)
            self._new_node()
            parent[base] = {}
            return
        if old is not None:
            self._drop(old)
            del parent[base]

        if typeflag == _LINK:
            found = self._find(target) if target else None
            node: object = 0
            if found is not None:
                holder, key = found
                existing = holder[key]
                if type(existing) is int:
                    if existing:
                        node = _Inode(existing, 2)
                        holder[key] = node
                elif type(existing) is _Inode:
                    existing.nlink += 1  # type: ignore[attr-defined]
                    node = existing
            self._new_node()
            parent[base] = node
            return

        if typeflag == _SYMLINK:
            value = len(linkname)
        elif typeflag in _REGULAR:
            value = size
        else:
            value = 0
        self._new_node()
        parent[base] = value
        self._size += value
