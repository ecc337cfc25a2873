"""Tar members for extraction: Python's :mod:`tarfile` in stream mode, opened as Go's ``archive/tar`` reads.

This module owns how the extractors (layers, ``docker cp``'s upload) open a tar stream for its members:
:func:`open_members` (UTF-8 names with undecodable bytes kept, an empty stream being no archive at all rather
than an error) and :class:`GoTarInfo` (a PAX global header an entry of its own, never applied to later entries).
Their checks are :class:`~.reader.TarInspector`'s, fed the same bytes.
"""

from __future__ import annotations

import tarfile
from typing import IO, Any

__all__ = ["GoTarInfo", "open_members", "MEMBER_ERRORS"]

#: What :mod:`tarfile` raises for a tar it cannot read.
MEMBER_ERRORS = (tarfile.TarError, EOFError, UnicodeError)


class GoTarInfo(tarfile.TarInfo):
    """A member as Go's ``archive/tar`` reads it: a PAX global header is an entry of its own (which
    ``archive.Unpack`` skips), never applied to the entries after it as :mod:`tarfile` would."""

    def _proc_pax(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.XGLTYPE:
            tarfile_.fileobj.read(self._block(self.size))  # type: ignore[attr-defined]
            return self.fromtarfile(tarfile_)
        return super()._proc_pax(tarfile_)  # type: ignore[misc,no-any-return]


def open_members(stream: IO[bytes] | Any, *, bufsize: int, go_globals: bool = False) -> tarfile.TarFile | None:
    """``stream`` (a file object read in order) opened as a tar in :mod:`tarfile`'s stream mode, names decoded as
    UTF-8 with undecodable bytes kept; None when the stream is empty.  ``go_globals``: PAX global headers read as
    Go does (:class:`GoTarInfo`).  Other failures raise :mod:`tarfile`'s errors."""
    try:
        if go_globals:
            return tarfile.open(fileobj=stream, mode="r|", bufsize=bufsize,
                                tarinfo=GoTarInfo, encoding="utf-8", errors="surrogateescape")
        return tarfile.open(fileobj=stream, mode="r|", bufsize=bufsize,
                            encoding="utf-8", errors="surrogateescape")
    except tarfile.ReadError as exc:
        if "empty file" not in str(exc):
            raise
        return None
