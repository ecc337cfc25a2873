"""Fast extraction of a build-context tar stream: checked and hashed in Python, written by GNU tar.

This module owns :func:`extract_with_tar`, the worker-thread half of
:func:`~dockwright.build.context.extract_context` when GNU ``tar`` is installed.  The (decompressed) stream
passes through :class:`ContextScanner` — the push parser of :mod:`dockwright.layers.tarstream` with
the build context's rules — *before* each chunk is handed to ``tar -x`` on a pipe, so an entry that
would leave the context (absolute or ``..`` names, symlinks whose relative target climbs out, hard links
to entries not in the archive, entries written through a symlink that points outside) is refused before
``tar`` ever sees it, and a truncated or corrupt stream is refused by the parser.  GNU tar adds its own
defence: symlinks with absolute or ``..`` targets are created only at the end (placeholders until then),
so nothing is ever written through them.

File bodies are hashed by a helper thread, chunk by chunk in order, while this thread parses the next chunk
and tar unpacks the last one.  On the way, every entry's tarsum — the hash dockerd's COPY/ADD checksums are made of (see
:mod:`~dockwright.build.srchash`) — is computed from its header and body (sha256; hashlib releases the GIL), so
the COPY cache key does not read the context a second time.  The
directories' modes and mtimes are reported so that they can be restored after ``.dockerignore`` pruned
files in them.  Files are owned by the daemon's user (``--no-same-owner``), as with the Python extractor.
"""

from __future__ import annotations

import fcntl
import functools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

from ..errors import DataCorrupted, InvalidArgument, SystemError_
from ..layers.tarstream import TarInspector, _BadNumber, _parse_numeric
from .srchash import context_entry_header

__all__ = ["ContextScanner", "extract_with_tar", "gnu_tar"]

_REG, _LINK, _SYMLINK, _DIR, _CONT, _SPARSE = 0x30, 0x31, 0x32, 0x35, 0x37, 0x53
_READ = 1 << 20
_F_SETPIPE_SZ = 1031
_IN_FLIGHT = 4  # chunks handed to the hashing thread and not yet hashed


@functools.cache
def gnu_tar() -> str | None:
    """The path of GNU tar, or None (another tar, or none); looked up once."""
    path = shutil.which("tar")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if b"GNU tar" in out else None


def _refuse(name: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid build context: tar entry {name!r} {why}")


def _clean(name: str) -> str:
    if name and name[0] not in "./" and "//" not in name and "/." not in name:
        return name[:-1] if name[-1] == "/" else name  # already clean (the docker CLI's names)
    if name.startswith("/"):
        raise _refuse(name, "has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(name, "is outside of the build context")
    return "/".join(parts)


_NO_PAX: dict[bytes, bytes] = {}


def _pax_id(pax: dict[bytes, bytes], key: bytes, field: bytes) -> int:
    if field == b"0000000\0" and not pax:
        return 0  # root, as the docker CLI writes it
    if key not in pax:
        return _num(field)
    try:
        return int(pax[key])
    except ValueError:
        return 0


def _num(field: bytes) -> int:
    """A header number field (octal or base-256); 0 if it does not parse."""
    try:
        return _parse_numeric(field)
    except _BadNumber:
        return 0


class ContextScanner(TarInspector):
    """Checks every entry of a build context and computes its tarsum as the entry streams past.

    After :meth:`close`: :attr:`tarsums` maps ``rel`` → the hex tarsum v1 of the last entry at each path
    (what dockerd's ``remotecontext.FromArchive`` computes: :func:`~dockwright.build.srchash.context_entry_header`
    of the raw header, then a regular file's bytes), :attr:`dirs` lists ``(rel, mode, mtime)`` of the
    directory entries in archive order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tarsums: dict[str, str] = {}
        self.dirs: list[tuple[str, int, float]] = []
        self._links: dict[str, str] = {}  # symlinks in the archive: rel -> target
        self._seen: set[str] = set()  # non-directory entries so far
        self._ok_parent: str | None = None  # the last directory _check_parents passed
        self._cur: tuple[str, Any] | None = None
        #: body slices seen by the last :meth:`feed`, hashed by :meth:`hash_pending` (after the chunk went
        #: to tar, so that tar unpacks while this thread hashes)
        self.pending: list[tuple[Any, memoryview]] = []
        self._done: list[tuple[str, Any]] = []
        self._hasher: ThreadPoolExecutor | None = None
        self._inflight: deque[Future[None]] = deque()

    def _finish_file(self) -> None:
        if self._cur is not None:
            self._done.append(self._cur)
            self._cur = None

    def hash_pending(self) -> None:
        """Hand the body slices the last :meth:`feed` calls saw, and the entries they finish, to the hashing
        thread (in order), so that the next chunk is parsed while these are hashed; at most a few chunks are
        in flight (bounded memory)."""
        if not self.pending and not self._done:
            return
        work, done = self.pending[:], self._done[:]
        self.pending.clear()
        self._done.clear()
        if self._hasher is None:
            self._hasher = ThreadPoolExecutor(1, thread_name_prefix="context-hash")
        self._inflight.append(self._hasher.submit(self._hash, work, done))
        while len(self._inflight) > _IN_FLIGHT:
            self._inflight.popleft().result()

    def _hash(self, work: list[tuple[Any, memoryview]], done: list[tuple[str, Any]]) -> None:
        for h, mv in work:
            h.update(mv)
        for rel, h in done:
            if h is None:
                self.tarsums.pop(rel, None)
            else:
                self.tarsums[rel] = h.hexdigest()

    def close(self) -> Any:
        self._finish_file()
        try:
            summary = super().close()
            self.hash_pending()
            while self._inflight:
                self._inflight.popleft().result()
        finally:
            self.shutdown()
        return summary

    def shutdown(self) -> None:
        """Stop the hashing thread (after an error: what is in flight is dropped)."""
        if self._hasher is not None:
            self._hasher.shutdown(wait=True, cancel_futures=True)
            self._hasher = None
        self._inflight.clear()

    def _check_parents(self, rel: str, name: str) -> None:
        end = rel.rfind("/")
        if end < 0:
            return
        if rel[:end] == self._ok_parent:
            return  # the previous entry's directory, checked then (and not replaced since)
        i = rel.find("/")
        while i > 0:
            parent = rel[:i]
            i = rel.find("/", i + 1)
            target = self._links.get(parent)
            if target is None:
                if parent in self._seen:
                    raise _refuse(name, "has a parent that is not a directory")
                continue
            # GNU tar creates symlinks with absolute or ".." targets only at the end: writing through
            # one would fail; a relative one without ".." stays inside the context
            if target.startswith("/") or ".." in target.split("/"):
                raise _refuse(name, "is written through a symlink that leaves the build context")
        self._ok_parent = rel[:end]

    def _apply(self, typeflag: int, name_b: bytes, linkname_b: bytes, size: int) -> None:
        self._finish_file()
        name = name_b.decode("utf-8", "surrogateescape")
        rel = _clean(name)
        if rel == "":
            if typeflag == _DIR:
                return
            raise _refuse(name, "is not a valid name")
        self._check_parents(rel, name)
        pax = self._hdr_pax or _NO_PAX
        hdr = self._hdr
        link = linkname_b.decode("utf-8", "surrogateescape") if linkname_b else ""
        xattrs = {k[13:].decode("utf-8", "surrogateescape"): v for k, v in pax.items()
                  if k.startswith(b"SCHILY.xattr.")} if pax else None
        uid, gid = _pax_id(pax, b"uid", hdr[108:116]), _pax_id(pax, b"gid", hdr[116:124])
        major = _num(hdr[329:337]) if hdr[329] else 0
        minor = _num(hdr[337:345]) if hdr[337] else 0
        head = context_entry_header(name, _num(hdr[100:108]), uid, gid, size, chr(typeflag), link, major, minor,
                                    xattrs)
        if typeflag == _DIR:
            self._done.append((rel, hashlib.sha256(head)))  # in entry order with the files' tarsums
            mtime: float = _num(self._hdr[136:148])
            if b"mtime" in pax:
                try:
                    mtime = float(pax[b"mtime"])
                except ValueError:
                    pass
            self.dirs.append((rel, _num(self._hdr[100:108]) & 0o7777, mtime))
            self._links.pop(rel, None)
            self._seen.discard(rel)
            return
        self._seen.add(rel)
        self._links.pop(rel, None)
        ok = self._ok_parent
        if ok is not None and (ok == rel or ok.startswith(rel + "/")):
            self._ok_parent = None  # a directory checked earlier is replaced by a non-directory
        if typeflag == _SYMLINK:
            # a relative target may climb out of the context (dockerd unpacks contexts in a chroot and keeps
            # it): it is resolved inside the context when used, and nothing is written through it here
            self._links[rel] = link
        elif typeflag == _LINK:
            target = _clean(link)
            self._check_parents(target, name)
            if target == "" or target not in self._seen:
                raise _refuse(name, f"is a hard link to {link!r}, which is not in the archive")
        elif typeflag in (_REG, _CONT):
            if any(k.startswith(b"GNU.sparse") for k in pax):
                self._done.append((rel, None))  # not hashed here: computed from the file when needed
                return
            h = hashlib.sha256(head)
            self._cur = (rel, h)
            pending = self.pending
            self._sink = lambda mv: pending.append((h, mv))
            if size == 0:
                self._finish_file()
            return
        self._done.append((rel, hashlib.sha256(head)))


def extract_with_tar(tar: str, read: Callable[[int], bytes], dest: str) -> ContextScanner:
    """Extract the tar stream ``read`` gives (``read(n)`` → bytes, b"" at the end) into ``dest``.

    Blocking (a worker thread).  Raises :class:`InvalidArgument` for a refused entry,
    :class:`DataCorrupted` for a corrupt or truncated stream or what GNU tar could not extract.
    """
    scanner = ContextScanner()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [tar, "-x", "-f", "-", "-C", dest, "--no-same-owner", "--warning=no-timestamp",
         "--warning=no-unknown-keyword", "--no-overwrite-dir"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, close_fds=True,
    )
    assert proc.stdin is not None
    fd = proc.stdin.fileno()
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _READ)  # tar unpacks a whole chunk while the next one is hashed
    except OSError:
        pass
    ok = False
    open_ = True  # tar still reads
    try:
        while True:
            data = read(_READ)
            if not data:
                break
            scanner.feed(data)  # refuses a hostile entry before tar sees the chunk holding it
            mv = memoryview(data)
            while open_ and mv:
                try:
                    mv = mv[os.write(fd, mv):]
                except BrokenPipeError:
                    open_ = False  # tar stopped reading: end of archive, or an error reported below
            scanner.hash_pending()
        scanner.close()
        ok = True
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        if not ok:
            proc.kill()
            scanner.shutdown()
        rc = proc.wait()
        err.seek(0)
        msg = err.read().decode("utf-8", "replace").strip()
        err.close()
    if rc != 0:
        lines = [ln.removeprefix("tar: ") for ln in msg.splitlines() if "Exiting with failure" not in ln]
        if "Cannot open: Not a directory" in msg or "Cannot create symlink" in msg:
            raise InvalidArgument("invalid build context: " + "; ".join(lines[:3]))
        if "Cannot" in msg or "No space" in msg:
            raise SystemError_("error extracting build context: " + "; ".join(lines[:3]))
        raise DataCorrupted("invalid build context: " + ("; ".join(lines[:3]) or f"tar exited with {rc}"))
    return scanner
