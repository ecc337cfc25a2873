"""Streaming inspection of a layer's tar stream, without unpacking or buffering it.

This module owns :class:`TarInspector`, which is fed the (decompressed) bytes of a layer in chunks of
any size while the layer is imported, and :class:`TarSummary`, what it says at the end.

It reads tar headers itself (the field parsing is :mod:`.headers`), the way Go's ``archive/tar`` does (the
reader dockerd and containerd use): V7, ustar, star, GNU and PAX headers with checksum verification (unsigned or
signed), base-256 numbers, GNU long names/links (``L``/``K``), PAX extended (``x``) and global (``g``) records
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

Everything extraction (:class:`~dockwright.layers.extract.TarExtractor`, which is fed through this inspector
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

Kept whole (a little over 600 lines, a tenth of them this docstring): the header state machine and the tree it
accounts entries into share the entry being read and its budget, and the build context scanner
(:class:`~dockwright.builder.extract.ContextScanner`) extends both through the one class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DataCorrupted
from .headers import (
    BLOCK_SIZE,
    DEVICE_TYPES,
    HEADER_ONLY_TYPES,
    NAME_MAX,
    PATH_MAX,
    REGULAR_TYPES,
    TYPE_DIR,
    TYPE_GNU_LONGLINK,
    TYPE_GNU_LONGNAME,
    TYPE_GNU_SPARSE,
    TYPE_LINK,
    TYPE_PAX_GLOBAL,
    TYPE_PAX_LOCAL,
    TYPE_REG,
    TYPE_REGA,
    TYPE_SYMLINK,
    ZERO_BLOCK,
    BadNumber,
    check_entry_fields,
    clean_components,
    cstr,
    header_checksums,
    parse_numeric,
    parse_octal,
    parse_pax_int,
    parse_pax_records,
    show_name,
)

__all__ = ["TarInspector", "TarSummary", "STATE_HEADER", "STATE_ZERO", "STATE_META", "STATE_SPARSE", "STATE_END"]

# reader states (public for the build context scanner, which extends the inspector)
STATE_HEADER = 0  # collecting a 512-byte header block
STATE_ZERO = 1  # saw one zero block, collecting the next block
STATE_META = 2  # collecting the body of an x/g/L/K header
STATE_SPARSE = 3  # collecting an old-GNU sparse extension block
STATE_END = 4  # after the end-of-archive marker: everything is ignored

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


def _describe(name: bytes, link: bytes | None) -> str:
    if link is None:
        return f"tar entry {show_name(name)}"
    return f"hardlink {show_name(name)} -> {show_name(link)}"



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
        self._state = STATE_HEADER
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
                if self._state == STATE_END:
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
        if state == STATE_END:
            return
        if self._body_left:
            raise DataCorrupted(
                f"unexpected EOF: tar stream truncated in the body of {show_name(self._entry_name)} "
                f"({self._body_left} bytes missing)"
            )
        if state == STATE_META:
            raise DataCorrupted("unexpected EOF: tar stream truncated in an extended header")
        if state == STATE_SPARSE:
            raise DataCorrupted(
                f"unexpected EOF: tar stream truncated in the sparse map of {show_name(self._entry_name)}"
            )
        if self._buf:
            raise DataCorrupted(
                f"unexpected EOF: tar stream truncated in a header block at offset {self._fed - len(self._buf)}"
            )
        if self._meta_pending:
            raise DataCorrupted("unexpected EOF: tar stream ends after an extended header, without its entry")

    def _dispatch(self, record: bytes, offset: int) -> None:
        state = self._state
        if state == STATE_HEADER:
            self._on_header(record, offset)
        elif state == STATE_META:
            self._state = STATE_HEADER
            self._pad_left = -self._need % BLOCK_SIZE
            self._need = BLOCK_SIZE
            self._on_meta(record, offset)
        elif state == STATE_ZERO:
            if record != ZERO_BLOCK:
                raise DataCorrupted(f"invalid tar header at offset {offset}: zero block followed by data")
            self._state = STATE_END
        else:  # STATE_SPARSE
            if not record[504]:
                self._state = STATE_HEADER
                self._body_left = self._sparse_body
                self._pad_left = -self._sparse_body % BLOCK_SIZE

    def _on_header(self, blk: bytes, offset: int) -> None:
        if blk == ZERO_BLOCK:
            if self._meta_pending:
                raise DataCorrupted(f"invalid tar header at offset {offset}: extended header without an entry")
            self._state = STATE_ZERO
            return

        # Checksum (unsigned, or signed as some old tars wrote it) and format.
        try:
            stored = parse_octal(blk[148:156])
        except BadNumber:
            raise DataCorrupted(f"invalid tar header at offset {offset}: bad checksum field") from None
        unsigned, signed = header_checksums(blk)
        if stored != unsigned:
            if stored != signed:
                raise DataCorrupted(f"invalid tar header at offset {offset}: checksum mismatch")
        magic = blk[257:263]
        if magic == b"ustar\0":
            fmt = "star" if blk[508:512] == b"tar\0" else "ustar"
        elif magic == b"ustar " and blk[263:265] == b" \0":
            fmt = "gnu"
        else:
            fmt = "v7"

        typeflag = blk[156]
        name = cstr(blk[0:100])
        try:
            size = parse_numeric(blk[124:136])
        except BadNumber:
            raise DataCorrupted(f"invalid tar header at offset {offset}: bad size field") from None

        # Meta headers: their body is collected and applies to the next entry.
        if typeflag in (TYPE_PAX_LOCAL, TYPE_PAX_GLOBAL, TYPE_GNU_LONGNAME, TYPE_GNU_LONGLINK):
            if size < 0:
                raise DataCorrupted(f"invalid tar header at offset {offset}: negative size")
            if size > self._max_meta:
                raise DataCorrupted(
                    f"invalid tar header at offset {offset}: extended header of {size} bytes is too long"
                )
            self._meta_type = typeflag
            if size:
                self._state = STATE_META
                self._need = size
            else:
                self._on_meta(b"", offset)
            return

        if fmt == "ustar":
            prefix = cstr(blk[345:500])
        elif fmt == "star":
            prefix = cstr(blk[345:476])
        elif fmt == "gnu":
            prefix = b""
            try:  # pre-Go1.8 writers put a ustar prefix into GNU headers; Go reads it back
                if blk[345]:
                    parse_numeric(blk[345:357])
                if blk[357]:
                    parse_numeric(blk[357:369])
            except BadNumber:
                candidate = cstr(blk[345:500])
                if candidate.isascii():
                    prefix = candidate
        else:
            prefix = b""
        if prefix:
            name = prefix + b"/" + name
        linkname = cstr(blk[157:257])

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
                    size = parse_pax_int(value)
                except BadNumber:
                    raise DataCorrupted(f"invalid PAX size {value!r} for the tar entry at offset {offset}") from None
        if self._long_name:
            name = self._long_name
        if self._long_link:
            linkname = self._long_link
        self._pax = None
        self._long_name = self._long_link = b""
        self._meta_pending = False

        if typeflag == TYPE_REGA:
            typeflag = TYPE_DIR if name.endswith(b"/") else TYPE_REG

        body = 0 if typeflag in HEADER_ONLY_TYPES else size
        if body < 0:
            raise DataCorrupted(f"invalid tar header for {show_name(name)}: negative size")
        logical = body
        sparse_ext = False
        if typeflag == TYPE_GNU_SPARSE:
            if fmt != "gnu":
                raise DataCorrupted(f"invalid tar header for {show_name(name)}: sparse entry in a non-GNU header")
            try:
                logical = parse_numeric(blk[483:495])
            except BadNumber:
                raise DataCorrupted(f"invalid tar header for {show_name(name)}: bad sparse size") from None
            sparse_ext = blk[482] != 0
        elif pax:
            name, logical = self._pax_sparse(pax, name, logical)
        if logical < 0:
            raise DataCorrupted(f"invalid tar header for {show_name(name)}: negative size")

        check_entry_fields(blk, pax, name)
        self._entry_name = name
        self._entries += 1
        self._hdr, self._hdr_pax, self._sink = blk, pax, None
        self._apply(typeflag, name, linkname, logical)
        if sparse_ext or logical != body:
            self._sink = None  # a sparse map is not the file's contents

        if sparse_ext:
            self._state = STATE_SPARSE
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
                size = parse_pax_int(value)
            except BadNumber:
                raise DataCorrupted(f"invalid GNU sparse size {value!r} for {show_name(name)}") from None
        return name, size

    def _on_meta(self, body: bytes, offset: int) -> None:
        kind = self._meta_type
        if kind == TYPE_GNU_LONGNAME or kind == TYPE_GNU_LONGLINK:
            value = cstr(body)
            if kind == TYPE_GNU_LONGNAME:
                self._long_name = value
            else:
                self._long_link = value
            self._meta_pending = True
            return
        records = self._parse_pax(body, offset)
        if kind == TYPE_PAX_LOCAL:
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
        """The records of a PAX header body (:func:`~.headers.parse_pax_records`); subclasses read global ones."""
        return parse_pax_records(body, offset)

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
                f"tar entry {show_name(self._entry_name)}: the layer creates too many directories for its size"
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
            cur = nxt
        return cur

    def _find(self, comps: list[bytes]) -> tuple[dict[bytes, object], bytes] | None:
        cur = self._root
        for i in range(len(comps) - 1):
            nxt = cur.get(comps[i])
            if type(nxt) is not dict:
                return None
            cur = nxt
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
                    raise DataCorrupted(f"{what} goes through the symlink {show_name(b'/'.join(target[: i + 1]))} "
                                        f"of the layer")
                raise DataCorrupted(f"{what}: the target is not in the layer")
            cur = nxt
        node = cur.get(target[-1])
        if node is None:
            raise DataCorrupted(f"{what}: the target is not in the layer")
        if type(node) is dict:
            raise DataCorrupted(f"{what}: the target is a directory")

    def _apply(self, typeflag: int, name: bytes, linkname: bytes, size: int) -> None:
        """Account for one entry as ``archive.Unpack`` with the overlay whiteout converter would."""
        comps = self._clean(name, name)
        if typeflag == TYPE_LINK:
            target = self._clean(linkname.lstrip(b"/"), name, linkname)
        if not comps:
            if typeflag == TYPE_DIR:
                return
            raise DataCorrupted(f"tar entry {show_name(name)} would replace the layer root")
        if typeflag == TYPE_LINK and self._links_in_archive:
            self._check_link_target(comps, target, name, linkname)
        elif typeflag == TYPE_SYMLINK and len(linkname) > PATH_MAX - 1:
            raise DataCorrupted(f"symlink {show_name(name)} has a target of {len(linkname)} bytes: longer than "
                                f"{PATH_MAX - 1} (PATH_MAX)")
        if self._symlinks:
            self._symlinks.discard(tuple(comps))
        if typeflag == TYPE_SYMLINK:
            self._symlinks.add(tuple(comps))
        if (typeflag not in REGULAR_TYPES and typeflag not in DEVICE_TYPES
                and typeflag not in (TYPE_LINK, TYPE_SYMLINK, TYPE_DIR)):
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
            if typeflag in REGULAR_TYPES:
                self._size += size
            elif typeflag == TYPE_SYMLINK:
                self._size += len(linkname)
            return

        old = parent.get(base)
        if typeflag == TYPE_DIR:
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

        if typeflag == TYPE_LINK:
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
                    existing.nlink += 1
                    node = existing
            self._new_node()
            parent[base] = node
            return

        if typeflag == TYPE_SYMLINK:
            value = len(linkname)
        elif typeflag in REGULAR_TYPES:
            value = size
        else:
            value = 0
        self._new_node()
        parent[base] = value
        self._size += value
