"""Build contexts for the classic builder: :func:`extract_context` streams a (plain, gzip, bzip2, xz or zstd)
tarball into a directory through a worker thread with bounded memory, refusing hostile entries, then locates and
reads the Dockerfile and removes what ``.dockerignore`` excludes."""

from __future__ import annotations

import asyncio
import io
import lzma
import os
import re
import shutil
import stat
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import zstandard

from ..dockerfile import MAX_DOCKERFILE_SIZE
from ..errors import DataCorrupted, DockwrightError, InvalidArgument, SystemError_
from ..layers.compression import Compression, decompressor, detect
from .dockerignore import DockerIgnore
from .extract import extract_with_python, extract_with_tar, gnu_tar
from .paths import go_clean as _go_clean
from .paths import scoped_resolve as _scoped_resolve

__all__ = ["ContextInfo", "extract_context", "DEFAULT_DOCKERFILE", "remove_existing", "finish_context", "CHUNK"]

DEFAULT_DOCKERFILE = "Dockerfile"
CHUNK = 1 << 16
_HANDOVER = 1 << 20
_DOCKER_PY_DOCKERFILE = re.compile(r"^\.dockerfile\.[0-9a-fA-F]+$")


def _gnu_tar() -> str | None:
    """GNU tar for extraction (None where it cannot run confined); ``DOCKWRIGHT_PY_EXTRACT=1`` forces the Python
    extractor."""
    return None if os.environ.get("DOCKWRIGHT_PY_EXTRACT") == "1" else gnu_tar()


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


def finish_context(dest: Path, dockerfile_name: str, dirs: list[tuple[str, int, float]]) -> ContextInfo:
    """A context extracted into ``dest``: its directories' times restored, the Dockerfile located and read, what
    ``.dockerignore`` excludes removed."""
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
    info = await asyncio.to_thread(finish_context, dest, dockerfile_name, dirs)
    info.tarsums = tarsums
    return info
