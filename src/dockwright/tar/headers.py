"""Tar header fields as Go's ``archive/tar`` reads them: numbers, checksums, PAX records, entry names.

This module owns the parsing primitives shared by every tar reader in the project (the layer inspector
:mod:`.reader`, the build context scanner, ``docker load``'s archive walker): octal and base-256 number fields,
PAX integer and time records, PAX record bodies, header checksums, the per-entry field checks extraction relies
on, and the cleaning of entry names below a root.
"""

from __future__ import annotations

import re

from ..errors import DataCorrupted

__all__ = [
    "BLOCK_SIZE", "PATH_MAX", "NAME_MAX", "ZERO_BLOCK", "MAX_OWNER_ID", "BadNumber", "cstr", "parse_octal",
    "parse_numeric", "parse_pax_int", "parse_pax_time", "parse_pax_records", "header_checksums", "looks_like_tar",
    "valid_owner_id",
    "check_entry_fields", "show_name", "clean_components",
    "TYPE_REG", "TYPE_LINK", "TYPE_SYMLINK", "TYPE_CHAR", "TYPE_BLOCK", "TYPE_DIR", "TYPE_FIFO", "TYPE_CONT",
    "TYPE_REGA", "TYPE_GNU_SPARSE", "TYPE_PAX_LOCAL", "TYPE_PAX_GLOBAL", "TYPE_GNU_LONGNAME", "TYPE_GNU_LONGLINK",
    "HEADER_ONLY_TYPES", "REGULAR_TYPES", "DEVICE_TYPES",
]

BLOCK_SIZE = 512
#: Longest cleaned entry path accepted; the kernel refuses longer paths, so dockerd cannot extract them.
PATH_MAX = 4096
#: Longest path component the kernel takes (bytes).
NAME_MAX = 255
#: An all-zero block (end-of-archive marker).
ZERO_BLOCK = bytes(BLOCK_SIZE)

_HIGH_BYTES = bytes(range(128, 256))
_OCTAL_DIGITS = b"01234567"
_PAX_INT = re.compile(rb"[+-]?[0-9]+")
_INT64_LIMIT = 1 << 63

# type flags (the byte at offset 156)
TYPE_REG = 0x30  # '0'
TYPE_LINK = 0x31  # '1'
TYPE_SYMLINK = 0x32  # '2'
TYPE_CHAR = 0x33  # '3'
TYPE_BLOCK = 0x34  # '4'
TYPE_DIR = 0x35  # '5'
TYPE_FIFO = 0x36  # '6'
TYPE_CONT = 0x37  # '7'
TYPE_REGA = 0x00  # '\0'
TYPE_GNU_SPARSE = 0x53  # 'S'
TYPE_PAX_LOCAL = 0x78  # 'x'
TYPE_PAX_GLOBAL = 0x67  # 'g'
TYPE_GNU_LONGNAME = 0x4C  # 'L'
TYPE_GNU_LONGLINK = 0x4B  # 'K'
#: Types whose size field Go ignores (no body).
HEADER_ONLY_TYPES = frozenset((TYPE_LINK, TYPE_SYMLINK, TYPE_CHAR, TYPE_BLOCK, TYPE_DIR, TYPE_FIFO))
#: Types whose body is file contents.
REGULAR_TYPES = frozenset((TYPE_REG, TYPE_CONT, TYPE_GNU_SPARSE))
#: Device and FIFO types.
DEVICE_TYPES = frozenset((TYPE_CHAR, TYPE_BLOCK, TYPE_FIFO))


class BadNumber(Exception):
    """A tar number field or PAX number that Go's ``archive/tar`` cannot parse."""


def cstr(field: bytes) -> bytes:
    """A NUL-terminated header field, up to its first NUL."""
    i = field.find(b"\0")
    return field if i < 0 else field[:i]


def parse_octal(field: bytes) -> int:
    """An octal header field (spaces and NULs around it ignored); :class:`BadNumber` if it is not one."""
    digits = field.strip(b" \0")
    if not digits:
        return 0
    digits = cstr(digits)
    if not digits or digits.translate(None, _OCTAL_DIGITS):
        raise BadNumber
    value = int(digits, 8)
    if value >= _INT64_LIMIT:
        raise BadNumber
    return value


def parse_numeric(field: bytes) -> int:
    """A tar number field: octal, or base-256 when the high bit is set (Go's ``parseNumeric``)."""
    first = field[0]
    if first & 0x80:
        if first & 0x40:
            inverted = bytes(b ^ 0xFF for b in field)
            value = int.from_bytes(bytes((inverted[0] & 0x7F,)) + inverted[1:], "big")
            if value >= _INT64_LIMIT:
                raise BadNumber
            return -value - 1
        value = int.from_bytes(bytes((first & 0x7F,)) + field[1:], "big")
        if value >= _INT64_LIMIT:
            raise BadNumber
        return value
    return parse_octal(field)


def parse_pax_int(value: bytes) -> int:
    """A PAX integer record (``uid``, ``gid``, ``size``) within int64; :class:`BadNumber` for anything else."""
    if not _PAX_INT.fullmatch(value):
        raise BadNumber
    n = int(value)
    if not -_INT64_LIMIT <= n < _INT64_LIMIT:
        raise BadNumber
    return n


_PAX_TIME = re.compile(rb"([+-]?[0-9]+)(?:\.([0-9]*))?")
_PAX_NUMBER_KEYS = (b"uid", b"gid", b"size")
_PAX_TIME_KEYS = (b"mtime", b"atime", b"ctime")
#: Largest uid/gid ``lchown`` takes.
MAX_OWNER_ID = (1 << 32) - 2  # (uid_t)-1 means "leave unchanged" to lchown; Python refuses it as an id


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
    return n == -1 or 0 <= n <= MAX_OWNER_ID


def check_entry_fields(blk: bytes, pax: dict[bytes, bytes] | None, name: bytes) -> None:
    """Refuse an entry whose header numbers or PAX numbers do not parse (Go's ``archive/tar`` fails the whole
    archive with ``ErrHeader``; Python's ``tarfile``, which extracts, fails on the header fields and turns bad
    PAX numbers into nonsense), or whose owner ``lchown`` cannot take. ``blk`` is the entry's raw header."""
    fields = {}
    for label, lo, hi in (("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124), ("mtime", 136, 148),
                          ("devmajor", 329, 337), ("devminor", 337, 345)):
        try:
            fields[label] = parse_numeric(blk[lo:hi])
        except BadNumber:
            raise DataCorrupted(f"invalid tar header for {show_name(name)}: bad {label} field "
                                f"{show_name(cstr(blk[lo:hi]))}") from None
    if pax:
        for key in _PAX_NUMBER_KEYS + _PAX_TIME_KEYS:
            value = pax.get(key)
            if not value:
                continue  # an empty record keeps the header's value (Go)
            try:
                number = parse_pax_int(value) if key in _PAX_NUMBER_KEYS else parse_pax_time(value)
            except (BadNumber, ValueError):
                raise DataCorrupted(f"invalid tar header for {show_name(name)}: bad PAX {key.decode()} record "
                                    f"{show_name(value)}") from None
            if key in (b"uid", b"gid"):
                fields[key.decode()] = number
    for label in ("uid", "gid"):
        if not valid_owner_id(fields[label]):
            raise DataCorrupted(f"invalid tar header for {show_name(name)}: {label} {fields[label]} is out of range "
                                f"(0 to {MAX_OWNER_ID})")


def show_name(name: bytes) -> str:
    """An entry name for a message: quoted, undecodable bytes escaped, cut at 200 characters."""
    text = name.decode("utf-8", "backslashreplace")
    if len(text) > 200:
        text = text[:200] + "…"
    return repr(text)


def header_checksums(blk: bytes) -> tuple[int, int]:
    """The checksums of a header block as Go accepts them: (unsigned, signed), the checksum field counted as
    eight spaces."""
    unsigned = sum(blk) - sum(blk[148:156]) + 8 * 32
    high = BLOCK_SIZE - 8 - len((blk[:148] + blk[156:]).translate(None, _HIGH_BYTES))
    return unsigned, unsigned - 256 * high


def looks_like_tar(head: bytes) -> bool:
    """The first block of a tar: all zeros (an empty archive) or a header with a valid checksum."""
    if len(head) < 512:
        return False
    blk = head[:512]
    if not any(blk):
        return True
    field = blk[148:156].strip(b" \0")
    if not field or field.translate(None, b"01234567"):
        return False
    stored = int(field, 8)
    return stored in header_checksums(blk)


def parse_pax_records(body: bytes, offset: int) -> dict[bytes, bytes]:
    """The records of a PAX extended header body as Go's ``parsePAX`` reads them (``offset``: of its header, for
    messages); sparse 0.0 offset/numbytes records fold into ``GNU.sparse.map``."""
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
