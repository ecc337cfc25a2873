"""Build contexts for the classic builder: ``.dockerignore``, the request-body tarball, remote contexts,
COPY/ADD source resolution and the content checksum used in the build cache key.

* :class:`DockerIgnore` is moby's ``patternmatcher`` (``NewPatternMatcher`` + ``MatchesOrParentMatches``)
  with ``ignorefile.ReadAll`` for reading a ``.dockerignore`` file;
* :func:`extract_context` streams a (plain, gzip, bzip2, xz or zstd) tarball into a directory through a
  worker thread with bounded memory, refusing hostile entries, then locates and reads the Dockerfile
  and removes what ``.dockerignore`` excludes (see :func:`extract_context`);
* :func:`fetch_remote` does the same for the ``remote`` parameter of ``POST /build`` (tarball URL,
  plain-text Dockerfile URL, git repository);
* :func:`resolve_sources` resolves one COPY/ADD source the way dockerd's ``copier.calcCopyInfo`` does.
"""

from __future__ import annotations

import asyncio
import io
import lzma
import os
import posixpath
import re
import shutil
import stat
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

import zstandard

from ..errors import DataCorrupted, DockwrightError, InvalidArgument, SystemError_
from ..layers.compression import Compression, decompressor, detect
from ..dockerfile import MAX_DOCKERFILE_SIZE
from .extract import extract_with_python, extract_with_tar, gnu_tar
from .paths import go_clean as _go_clean
from .paths import scoped_resolve as _scoped_resolve

__all__ = [
    "DockerIgnore",
    "ContextInfo",
    "extract_context",
    "fetch_remote",
    "resolve_sources",
    "resolve_sources_named",
    "contains_wildcards",
    "go_path_match",
    "is_git_url",
]

DEFAULT_DOCKERFILE = "Dockerfile"
_CHUNK = 1 << 16
_HANDOVER = 1 << 20
_DOCKER_PY_DOCKERFILE = re.compile(r"^\.dockerfile\.[0-9a-fA-F]+$")


def _gnu_tar() -> str | None:
    """GNU tar for extraction (None where it cannot run confined); ``DOCKWRIGHT_PY_EXTRACT=1`` forces the Python
    extractor."""
    return None if os.environ.get("DOCKWRIGHT_PY_EXTRACT") == "1" else gnu_tar()


# ==================================================================================================
# Go helpers


def _go_dir(p: str) -> str:
    """Go's ``filepath.Dir``."""
    i = p.rfind("/")
    return _go_clean(p[: i + 1])


class _BadPattern(Exception):
    pass


def _get_esc(chunk: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise _BadPattern
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise _BadPattern
    r, rest = chunk[0], chunk[1:]
    if not rest:
        raise _BadPattern
    return r, rest


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern and pattern[0] == "*":
        pattern = pattern[1:]
        star = True
    inrange = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    """Go's ``filepath.matchChunk``; raises :class:`_BadPattern`."""
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = False
            if chunk and chunk[0] == "^":
                negated = True
                chunk = chunk[1:]
            match = False
            nrange = 0
            while True:
                if chunk and chunk[0] == "]" and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if not failed and lo <= r <= hi:
                    match = True
                nrange += 1
            if match == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise _BadPattern
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def _go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` on Unix; raises :class:`_BadPattern` for a malformed pattern."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        t, ok = _match_chunk(chunk, name)
        if ok and (not t or pattern):
            name = t
            continue
        if star:
            found = False
            i = 0
            while i < len(name) and name[i] != "/":
                t, ok = _match_chunk(chunk, name[i + 1 :])
                if ok:
                    if not pattern and t:
                        i += 1
                        continue
                    name = t
                    found = True
                    break
                i += 1
            if found:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return name == ""


def go_path_match(pattern: str, name: str) -> bool:
    """``filepath.Match(pattern, name)`` with errors ignored (a malformed pattern matches nothing)."""
    try:
        return _go_match(pattern, name)
    except _BadPattern:
        return False


def contains_wildcards(name: str) -> bool:
    """moby's ``containsWildcards``: an unescaped ``*``, ``?`` or ``[``."""
    i = 0
    while i < len(name):
        c = name[i]
        if c == "\\":
            i += 1
        elif c in "*?[":
            return True
        i += 1
    return False


# ==================================================================================================
# .dockerignore


_EXACT, _PREFIX, _SUFFIX, _REGEXP = range(4)
_ESCAPE_CHARS = ".+()|{}$"


class _Pattern:
    __slots__ = ("cleaned", "exclusion", "kind", "regexp")

    def __init__(self, cleaned: str, exclusion: bool) -> None:
        self.cleaned = cleaned
        self.exclusion = exclusion
        self.regexp: re.Pattern[str] | None = None
        self.kind = self._compile()

    def _compile(self) -> int:
        reg = "^"
        p = self.cleaned
        kind = _EXACT
        n = len(p)
        pos = 0
        i = 0
        while pos < n:
            ch = p[pos]
            pos += 1
            if ch == "*":
                if pos < n and p[pos] == "*":
                    pos += 1
                    if pos < n and p[pos] == "/":
                        pos += 1
                    if pos >= n:
                        if kind == _EXACT:
                            kind = _PREFIX
                        else:
                            reg += ".*"
                            kind = _REGEXP
                    else:
                        reg += "(.*/)?"
                        kind = _REGEXP
                    if i == 0:
                        kind = _SUFFIX
                else:
                    reg += "[^/]*"
                    kind = _REGEXP
            elif ch == "?":
                reg += "[^/]"
                kind = _REGEXP
            elif ch in _ESCAPE_CHARS:
                reg += "\\" + ch
            elif ch == "\\":
                if pos < n:
                    reg += "\\" + p[pos]
                    pos += 1
                    kind = _REGEXP
                else:
                    reg += "\\\\"
            elif ch in "[]":
                reg += ch
                kind = _REGEXP
            else:
                reg += ch
            i += 1
        if kind != _REGEXP:
            return kind
        try:
            self.regexp = re.compile(reg + r"\Z")
        except re.error as exc:
            raise InvalidArgument(f"syntax error in pattern: {self.cleaned}") from exc
        return _REGEXP

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.cleaned
        if self.kind == _PREFIX:
            return path.startswith(self.cleaned[:-2])
        if self.kind == _SUFFIX:
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix[:1] == "/" and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None


def _read_ignore_lines(lines: list[str], *, comments: bool = True) -> list[str]:
    """moby's ``ignorefile.ReadAll`` over lines already split."""
    out: list[str] = []
    for n, line in enumerate(lines):
        if n == 0 and line.startswith("\ufeff"):
            line = line[1:]
        if comments and line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _go_clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        if invert:
            pattern = "!" + pattern
        out.append(pattern)
    return out


class IgnoreRules(Protocol):
    """What decides that a context path is left out (:class:`DockerIgnore`, or nothing for an image's files)."""

    def matches(self, path: str) -> bool:
        """Whether ``path`` (relative, slash-separated) is ignored."""


class DockerIgnore:
    """A ``.dockerignore`` matcher with moby's ``patternmatcher`` semantics.

    ``patterns`` are lines as read from the file: ``ignorefile.ReadAll``'s processing (comments and
    blank lines dropped, whitespace trimmed, ``filepath.Clean``, leading ``/`` removed) is applied, then
    ``NewPatternMatcher``'s.  A malformed pattern raises :class:`InvalidArgument`.
    """

    def __init__(self, patterns: list[str], *, _processed: bool = False) -> None:
        lines = list(patterns) if _processed else _read_ignore_lines(list(patterns))
        self.patterns: list[str] = lines
        self._compiled: list[_Pattern] = []
        self.exclusions = False
        for p in lines:
            p = p.strip()
            if not p:
                continue
            p = _go_clean(p)
            exclusion = False
            if p[0] == "!":
                if len(p) == 1:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                exclusion = True
                p = p[1:]
                self.exclusions = True
            try:
                _go_match(p, ".")
            except _BadPattern:
                raise InvalidArgument(f"syntax error in pattern: {p}") from None
            self._compiled.append(_Pattern(p, exclusion))

    @classmethod
    def from_text(cls, text: str | bytes) -> DockerIgnore:
        """Parse the contents of a ``.dockerignore`` file."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogateescape")
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
        return cls(_read_ignore_lines(lines), _processed=True)

    def __bool__(self) -> bool:
        return bool(self._compiled)

    def __repr__(self) -> str:
        return f"DockerIgnore({self.patterns!r})"

    def matches(self, path: str) -> bool:
        """True if ``path`` (relative, ``/``-separated) is excluded: ``MatchesOrParentMatches``."""
        if not self._compiled:
            return False
        file = path
        matched = False
        parent = _go_dir(file)
        parent_dirs = parent.split("/")
        for pat in self._compiled:
            if pat.exclusion != matched:
                continue
            match = pat.match(file)
            if not match and parent != ".":
                for i in range(len(parent_dirs)):
                    if pat.match("/".join(parent_dirs[: i + 1])):
                        match = True
                        break
            if match:
                matched = not pat.exclusion
        return matched




# ==================================================================================================
# extraction


class _Aborted(Exception):
    """The feeding side went away; the worker stops."""


class _ChunkReader(io.RawIOBase):
    """A blocking raw reader over chunks handed out by ``get`` (``None`` at the end)."""

    def __init__(self, get: Callable[[], bytes | None]) -> None:
        super().__init__()
        self._get = get
        self._buf = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def peek_head(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n and not self._eof:
            chunk = self._get()
            if chunk is None:
                self._eof = True
                break
            self._buf = self._buf[self._pos :] + chunk
            self._pos = 0
        return self._buf[self._pos : self._pos + n]

    def _fill(self) -> None:
        while self._pos >= len(self._buf) and not self._eof:
            chunk = self._get()
            if chunk is None:
                self._eof = True
            else:
                self._buf, self._pos = chunk, 0

    def read_chunk(self, n: int = 0) -> bytes:
        """The rest of the current chunk, or the next one (b"" at the end): no copy for whole chunks."""
        self._fill()
        out = self._buf[self._pos :] if self._pos else self._buf
        self._pos = len(self._buf)
        return out

    def readinto(self, b: Any) -> int:
        self._fill()
        avail = len(self._buf) - self._pos
        if avail <= 0:
            return 0
        k = min(len(b), avail)
        b[:k] = self._buf[self._pos : self._pos + k]
        self._pos += k
        return k


_DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, zlib.error, ValueError)


class _PieceReader:
    """``read(n)`` over :func:`~dockwright.layers.compression.decompressor`'s output pieces (1 MiB at
    most each, however compressible the input: memory stays bounded)."""

    def __init__(self, raw: _ChunkReader, kind: Compression) -> None:
        self._pieces = decompressor(kind).stream(iter(raw.read_chunk, b""))
        self._out = b""
        self._pos = 0

    def read(self, n: int) -> bytes:
        while self._pos >= len(self._out):
            out = next(self._pieces, None)
            if out is None:
                return b""
            self._out, self._pos = out, 0
        chunk = self._out[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


class _Decompressing(io.RawIOBase):
    """Bounded-memory decompression of a raw reader; errors become :class:`DataCorrupted`."""

    def __init__(self, raw: _ChunkReader, kind: Compression) -> None:
        super().__init__()
        self.kind = kind
        # the layers' checked decompressor (ISA-L gzip, bounded pieces, the xz memory limit, truncation checks)
        self._inner: Any = raw if kind is Compression.NONE else _PieceReader(raw, kind)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            data = self._inner.read(len(b))
        except _Aborted:
            raise
        except DockwrightError:
            raise
        except _DECOMPRESS_ERRORS as exc:
            raise DataCorrupted(f"invalid build context: invalid {self.kind.value} data: {exc}") from exc
        k = len(data)
        b[:k] = data
        return k


def remove_existing(path: str, keep_dir: bool) -> bool:
    """Remove what is at ``path`` unless it is a directory and ``keep_dir``; True if a dir was kept."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return False


_Extracted = tuple[list[tuple[str, int, float]], dict[str, str]]
_O_REAL_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_real_dir(root_fd: int, rel: str) -> int | None:
    """A descriptor of the directory ``rel`` below ``root_fd`` reached through directories only (None if a
    component is missing, or is a symlink or a file)."""
    cur = os.dup(root_fd)
    try:
        for part in rel.split("/"):
            nxt = os.open(part, _O_REAL_DIR, dir_fd=cur)
            os.close(cur)
            cur = nxt
    except OSError:
        os.close(cur)
        return None
    return cur


def _restore_dirs(dest: Path, dirs: list[tuple[str, int, float]]) -> None:
    """The modes and mtimes of the archive's directories (``rel``, mode, mtime), set after ``.dockerignore``
    pruned files in them.  Never through a symlink: a directory of the archive may have been replaced by one
    since (a symlink to a host directory, whose mode would otherwise be changed)."""
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for rel, mode, mtime in reversed(dirs):
            fd = _open_real_dir(root_fd, rel)
            if fd is None:
                continue
            try:
                os.fchmod(fd, mode)
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)


def _extract_sync(reader: _ChunkReader, dest: Path) -> _Extracted:
    """Extract into ``dest``; the directories (rel, mode, mtime) and the entries' tarsums (``path → hex``,
    see :class:`~dockwright.builder.extract.ContextScanner`)."""
    head = reader.peek_head(8)
    if not head:
        return [], {}  # an empty body is an empty context, as for Go's tar reader
    kind = detect(head)
    stream = _Decompressing(reader, kind)
    dest_s = str(dest)
    read = reader.read_chunk if kind is Compression.NONE else stream.read
    tar = _gnu_tar()
    scan = extract_with_tar(tar, read, dest_s) if tar is not None else extract_with_python(read, dest_s)
    return scan.dirs, {dest_s + "/" + rel: v for rel, v in scan.tarsums.items()}


def _force_put(q: asyncio.Queue[Any], item: Any) -> None:
    while True:
        try:
            q.get_nowait()
        except asyncio.QueueEmpty:
            break
    q.put_nowait(item)


async def _stream_extract(chunks: AsyncIterator[bytes], dest: Path) -> _Extracted:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)
    done = False

    def get() -> bytes | None:
        item = asyncio.run_coroutine_threadsafe(q.get(), loop).result()
        if isinstance(item, BaseException):
            raise _Aborted() from item
        return cast("bytes | None", item)

    async def feed() -> None:
        # the body arrives in socket-sized pieces; they go to the worker about 1 MiB at a time (each hand-over
        # costs a cross-thread wake-up)
        batch: list[bytes] = []
        size = 0
        try:
            async for chunk in chunks:
                if done:
                    continue  # the archive ended; drain the rest of the body
                if chunk:
                    batch.append(chunk)
                    size += len(chunk)
                    if size >= _HANDOVER:
                        await q.put(batch[0] if len(batch) == 1 else b"".join(batch))
                        batch, size = [], 0
            if batch and not done:
                await q.put(batch[0] if len(batch) == 1 else b"".join(batch))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not done:
                _force_put(q, exc)
            raise
        if not done:
            await q.put(None)

    feeder = asyncio.ensure_future(feed())
    worker = loop.run_in_executor(None, _extract_sync, _ChunkReader(get), dest)
    try:
        result = await asyncio.shield(worker)
    except BaseException as exc:
        if not worker.done():  # we were cancelled: stop the worker
            worker.add_done_callback(lambda f: f.cancelled() or f.exception())
            _force_put(q, asyncio.CancelledError())
        if feeder.done() and not feeder.cancelled() and feeder.exception() is not None:
            if isinstance(exc, _Aborted):
                raise feeder.exception() from None  # type: ignore[misc]
        feeder.cancel()
        try:
            await feeder
        except BaseException:
            pass
        if isinstance(exc, (DockwrightError, asyncio.CancelledError)):
            raise
        if isinstance(exc, OSError):
            raise SystemError_(f"error extracting build context: {exc}") from exc
        raise
    done = True
    while not q.empty():  # unblock a pending put; the feeder now drains the rest of the body
        q.get_nowait()
    await feeder
    return result


# ==================================================================================================
# after extraction: Dockerfile, .dockerignore


@dataclass
class ContextInfo:
    """An extracted build context."""

    root: Path
    dockerfile: bytes
    dockerfile_path: str
    ignore: DockerIgnore = field(default_factory=lambda: DockerIgnore([]))
    #: full path → tarsum (hex) of the context's entries, hashed while the context streamed in
    tarsums: dict[str, str] = field(default_factory=dict)


def _read_scoped(root: Path, rel: str) -> bytes | None:
    """The contents of the regular file at ``rel`` (symlinks followed inside ``root``), None if there is
    none; at most one byte more than :data:`MAX_DOCKERFILE_SIZE` is read (the parser refuses a Dockerfile that
    long with BuildKit's words), whatever the file's size.  Raises :class:`ValueError` if ``rel`` leaves the
    root."""
    full = _scoped_resolve(root, rel)
    try:
        with open(full, "rb") as f:
            return f.read(MAX_DOCKERFILE_SIZE + 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _apply_ignore(root: Path, ignore: DockerIgnore) -> None:
    if not ignore:
        return

    def walk(dirpath: str, rel: str) -> None:
        with os.scandir(dirpath) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            is_dir = e.is_dir(follow_symlinks=False)
            if ignore.matches(r):
                if is_dir and ignore.exclusions:
                    walk(e.path, r)  # an exception may re-include something inside
                    try:
                        os.rmdir(e.path)
                    except OSError:
                        pass
                elif is_dir:
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)
            elif is_dir:
                walk(e.path, r)

    walk(str(root), "")


def _finish_context(dest: Path, dockerfile_name: str, dirs: list[tuple[str, int, float]]) -> ContextInfo:
    name = dockerfile_name or DEFAULT_DOCKERFILE
    try:
        raw_ignore = _read_scoped(dest, ".dockerignore")
        if raw_ignore is not None and len(raw_ignore) > MAX_DOCKERFILE_SIZE:  # BuildKit's limit for it too
            raise InvalidArgument(f".dockerignore exceeds maximum allowed size of {MAX_DOCKERFILE_SIZE} bytes")
        ignore = DockerIgnore.from_text(raw_ignore) if raw_ignore is not None else DockerIgnore([])
        try:
            content = _read_scoped(dest, name)
        except ValueError:
            raise InvalidArgument(f"forbidden path outside the build context: {name} ()") from None
        if content is None and name == DEFAULT_DOCKERFILE:
            lower = name.lower()
            content = _read_scoped(dest, lower)
            if content is not None:
                name = lower
        if content is None:
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
        rel_name = _go_clean(name).lstrip("/")
        _apply_ignore(dest, ignore)
        if _DOCKER_PY_DOCKERFILE.match(rel_name):
            # docker-py's Dockerfile from outside the context: read, then not part of the context
            try:
                os.unlink(dest / rel_name)
            except FileNotFoundError:
                pass
    finally:
        _restore_dirs(dest, dirs)
    return ContextInfo(root=dest, dockerfile=content, dockerfile_path=rel_name, ignore=ignore)


async def extract_context(
    chunks: AsyncIterator[bytes], dest: Path, *, dockerfile_name: str = DEFAULT_DOCKERFILE
) -> ContextInfo:
    """Extract a build-context tarball streamed as ``chunks`` into ``dest`` (created if needed).

    The compression (none, gzip, bzip2, xz, zstd) is detected from the first bytes; an empty body is an
    empty context.  Entry names are cleaned into the context as dockerd's chrooted ``Untar`` does
    (``../foo`` and ``/foo`` are ``foo``: ``..`` stops at the context's root); entries below a symlink of
    the archive and hard links to entries that are not in the archive raise :class:`InvalidArgument`
    (see :mod:`.extract`); a corrupt stream raises :class:`DataCorrupted`.  Modes, mtimes and symlinks
    (whatever their target: dockerd resolves them inside the context) are kept; devices and fifos are
    skipped.

    Afterwards the Dockerfile is read (``Dockerfile`` falls back to ``dockerfile``; missing →
    "Cannot locate specified Dockerfile: …"), and everything ``.dockerignore`` excludes is deleted from
    ``dest`` — so the Dockerfile and ``.dockerignore`` stay COPY-able unless they are listed themselves,
    as with dockerd's ``removeDockerfile``.  A docker-py ``.dockerfile.<hex>`` Dockerfile is removed
    after reading.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dirs, tarsums = await _stream_extract(chunks, dest)
    info = await asyncio.to_thread(_finish_context, dest, dockerfile_name, dirs)
    info.tarsums = tarsums
    return info


# ==================================================================================================
# remote contexts

# dockerd's list, plus zstd (any compression the extractor reads)
_ACCEPTABLE_MIME = re.compile(
    r"(?:application/(?:(?:x\-)?tar|octet\-stream|((?:x\-)?(?:gzip|bzip2?|xz|zstd)))|(?:text/plain))"
)
_MAX_PREAMBLE = 100
_GIT_FRAGMENT = re.compile(r"\.git(?:#.+)?$")


def _detect_content_type(data: bytes) -> str:
    """A reduced ``http.DetectContentType``: enough to tell text, HTML/XML and common binaries apart."""
    stripped = data.lstrip(b"\t\n\x0c\r ")
    upper = stripped[:16].upper()
    for sig in (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT",
                b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--"):
        if upper.startswith(sig) and len(stripped) > len(sig) and stripped[len(sig)] in b" >":
            return "text/html; charset=utf-8"
    if stripped.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    for sig, ct in ((b"%PDF-", "application/pdf"), (b"\x1f\x8b\x08", "application/x-gzip"),
                    (b"PK\x03\x04", "application/zip"), (b"Rar!\x1a\x07", "application/x-rar-compressed"),
                    (b"GIF8", "image/gif"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg")):
        if data.startswith(sig):
            return ct
    if data.startswith((b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe")):
        return "text/plain; charset=utf-8"
    if any(b <= 0x08 or b == 0x0B or 0x0E <= b <= 0x1A or 0x1C <= b <= 0x1F for b in data[:512]):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def is_git_url(remote: str) -> bool:
    """moby's ``urlutil.IsGitURL`` (plus ``file://`` URLs, for local repositories)."""
    if remote.startswith(("http://", "https://")) and _GIT_FRAGMENT.search(remote):
        return True
    return remote.startswith(("git://", "github.com/", "git@", "file://"))


async def fetch_remote(remote: str, dest: Path, *, dockerfile_name: str = DEFAULT_DOCKERFILE) -> ContextInfo:
    """Materialise the ``remote`` build context of ``POST /build`` into ``dest``.

    * a git URL (``https://…/x.git#ref:subdir``, ``git://``, ``git@…``, ``github.com/…``, ``file://``)
      is fetched with the git CLI as moby's ``gitutils`` does (shallow unless a dumb HTTP server);
    * another http(s) URL is downloaded: ``text/plain`` content becomes ``dest/Dockerfile``, anything
      else is extracted as a tarball (see :func:`extract_context`).

    Errors raise :class:`InvalidArgument` with dockerd's words.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if is_git_url(remote):
        await _git_context(remote, dest)
        return await asyncio.to_thread(_finish_context, dest, dockerfile_name, [])
    if remote.startswith(("http://", "https://")):
        return await _url_context(remote, dest, dockerfile_name)
    raise InvalidArgument(f"remoteURL ({remote}) could not be recognized as URL")


async def _url_context(remote: str, dest: Path, dockerfile_name: str) -> ContextInfo:
    import aiohttp

    prefix = f"error downloading remote context {remote}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=60)) as session:
            async with session.get(remote) as resp:
                if resp.status >= 400:
                    body = await resp.content.read(4096)
                    text = body.decode("utf-8", "replace").strip()
                    raise InvalidArgument(
                        f"{prefix}: failed to GET {remote} with status {resp.status} {resp.reason or ''}".rstrip()
                        + f": {text}"
                    )
                ct = resp.headers.get("Content-Type", "")
                clen = resp.content_length
                plen = clen if clen and 0 < clen <= _MAX_PREAMBLE else _MAX_PREAMBLE
                preamble = b""
                while len(preamble) < plen:
                    piece = await resp.content.read(plen - len(preamble))
                    if not piece:
                        break
                    preamble += piece
                if not preamble:
                    raise InvalidArgument(f"error detecting content type for remote {remote}: empty response")
                content_type = ct
                if not ct or ct == "application/octet-stream":
                    content_type = _detect_content_type(preamble)
                found = _ACCEPTABLE_MIME.search(content_type)
                if not found:
                    raise InvalidArgument(
                        f'error detecting content type for remote {remote}: unsupported Content-Type "{ct}"'
                    )

                async def body_chunks() -> AsyncIterator[bytes]:
                    yield preamble
                    async for piece in resp.content.iter_chunked(_CHUNK):
                        yield piece

                if found.group(0) == "text/plain":
                    path = dest / DEFAULT_DOCKERFILE
                    data = bytearray()
                    async for piece in body_chunks():
                        data += piece
                    await asyncio.to_thread(path.write_bytes, bytes(data))
                    return ContextInfo(
                        root=dest, dockerfile=bytes(data), dockerfile_path=DEFAULT_DOCKERFILE, ignore=DockerIgnore([])
                    )
                return await extract_context(body_chunks(), dest, dockerfile_name=dockerfile_name)
    except DockwrightError:
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
        raise InvalidArgument(f"{prefix}: {exc}") from exc


# -- git -------------------------------------------------------------------------------------------


def _parse_git_url(remote: str) -> tuple[str, str, str]:
    """moby's ``parseRemoteURL``: (remote, ref, subdir); an empty ref means the remote's HEAD."""
    if not (remote.startswith("git@") or urlsplit(remote).scheme in ("git", "http", "https", "ssh", "file")):
        remote = "https://" + remote
    if remote.startswith("git@"):
        url, _, fragment = remote.partition("#")
    else:
        parts = urlsplit(remote)
        fragment = parts.fragment
        url = urlunsplit(parts._replace(fragment=""))
    ref, _, subdir = fragment.partition(":")
    if ref.startswith("-"):
        raise InvalidArgument(f"invalid refspec: {ref}")
    return url, ref, subdir


async def _supports_shallow(url: str) -> bool:
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        return True
    import aiohttp

    service = url + "/info/refs?service=git-upload-pack"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            for method in ("HEAD", "GET"):
                try:
                    async with session.request(method, service) as resp:
                        if resp.status == 200:
                            return resp.headers.get("Content-Type") == "application/x-git-upload-pack-advertisement"
                except aiohttp.ClientError:
                    continue
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False
    return False


async def _git(cwd: Path, *args: str, allow_file: bool = False) -> tuple[int, str]:
    env = dict(os.environ)
    env.update(
        GIT_PROTOCOL_FROM_USER="0",
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        HOME="/dev/null",
        LC_ALL="C",
    )
    cmd = ["git", "-c", f"protocol.file.allow={'always' if allow_file else 'never'}", *args]
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
    except FileNotFoundError as exc:
        raise InvalidArgument("unable to prepare context: git is not installed") from exc
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode("utf-8", "replace").strip()


async def _git_context(remote: str, dest: Path) -> None:
    url, ref, subdir = _parse_git_url(remote)
    is_file = url.startswith("file://")
    work = Path(tempfile.mkdtemp(prefix=".git-context-", dir=dest.parent))
    try:
        rc, out = await _git(work, "init", "-q")
        if rc:
            raise InvalidArgument(f"failed to init repo at {work}: {out}")
        rc, out = await _git(work, "remote", "add", "origin", url)
        if rc:
            raise InvalidArgument(f"failed add origin repo at {url}: {out}")
        fetch = ["fetch"]
        if await _supports_shallow(url):
            fetch += ["--depth", "1"]
        fetch += ["origin", "--", ref or "HEAD"]
        rc, out = await _git(work, *fetch, allow_file=is_file)
        if rc:
            raise InvalidArgument(f"error fetching: {out}")
        rc, out = (1, "") if not ref else await _git(work, "checkout", "-q", ref)
        if rc:
            rc2, out2 = await _git(work, "checkout", "-q", "FETCH_HEAD")
            if rc2:
                raise InvalidArgument(f"error checking out {ref or 'HEAD'}: {out or out2}")
        rc, out = await _git(work, "submodule", "update", "--init", "--recursive", "--depth=1")
        if rc:
            raise InvalidArgument(f"error initializing submodules: {out}")
        src = work
        if subdir:
            try:
                src = _scoped_resolve(work, subdir)
            except ValueError:
                raise InvalidArgument(f'error setting git context, "{subdir}" not within git root') from None
            if not src.exists():
                raise InvalidArgument(f"error setting git context: stat {src}: no such file or directory")
            if not src.is_dir():
                raise InvalidArgument(f"error setting git context, not a directory: {src}")

        def move() -> None:
            for entry in os.listdir(src):
                target = dest / entry
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                shutil.move(str(src / entry), str(target))

        await asyncio.to_thread(move)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


# ==================================================================================================
# COPY sources


def _not_found(rel: str) -> InvalidArgument:
    return InvalidArgument(
        f"COPY failed: file not found in build context or excluded by .dockerignore: stat {rel}: file does not exist"
    )


def _walk_rel(root: Path) -> Iterator[tuple[str, bool]]:
    """``filepath.WalkDir`` order (lexical, depth first, symlinks not followed): (rel, is_dir)."""

    def walk(dirpath: str, rel: str) -> Iterator[tuple[str, bool]]:
        try:
            with os.scandir(dirpath) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            is_dir = e.is_dir(follow_symlinks=False)
            yield r, is_dir
            if is_dir:
                yield from walk(e.path, r)

    yield from walk(str(root), "")


def _copy_info(root: Path, rel: str, ignore: IgnoreRules) -> Path:
    try:
        full = _scoped_resolve(root, rel)
    except ValueError:
        raise InvalidArgument(f"COPY failed: forbidden path outside the build context: {rel} ()") from None
    try:
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(rel) from None
    clean = _go_clean(rel)
    if clean != "." and not stat.S_ISDIR(st.st_mode) and ignore.matches(clean):
        raise _not_found(rel)
    return full


def resolve_sources(root: Path, pattern: str, ignore: IgnoreRules) -> list[Path]:
    """The paths a COPY/ADD source ``pattern`` names in the context at ``root`` (dockerd's
    ``calcCopyInfo``): symlinks are resolved inside the context, so the paths returned are the real
    entries (files or directories) under ``root``.  :func:`resolve_sources_named` also gives the names.

    Wildcards (``*``, ``?``, ``[…]``, Go's ``filepath.Match``) are matched against every entry of the
    context; a pattern that matches nothing gives ``[]`` (the caller reports dockerd's
    "COPY failed: no source files were specified" when all sources are empty).  Files excluded by
    ``ignore`` are invisible.
    """
    return [p for p, _ in resolve_sources_named(root, pattern, ignore)]


def resolve_sources_named(root: Path, pattern: str, ignore: IgnoreRules) -> list[tuple[Path, str]]:
    """:func:`resolve_sources` with each entry's name as the source names it — a symlink's own name, which
    dockerd gives the copy of what the symlink points to."""
    root = Path(root)
    orig = pattern
    if orig.startswith("/"):
        orig = orig[1:]
    if orig.startswith("./"):
        orig = orig[2:]
    if contains_wildcards(orig):
        out: list[tuple[Path, str]] = []
        for rel, is_dir in _walk_rel(root):
            if not go_path_match(orig, rel):
                continue
            if not is_dir and ignore.matches(rel):
                continue
            out.append((_copy_info(root, rel, ignore), posixpath.basename(rel)))
        return out
    rel = orig if orig else "."
    full = _copy_info(root, rel, ignore)
    name = posixpath.basename(_go_clean(rel))
    return [(full, name if name not in (".", "", "..") else full.name)]
