"""Extraction of a build-context tar stream: checked and hashed in Python, written by confined GNU tar or by
the hardened extractor of :mod:`dockwright.layers.apply`.

This module owns :func:`extract_with_tar` and :func:`extract_with_python`, the worker-thread half of
:func:`~dockwright.builder.context.extract_context`.  The (decompressed) stream passes through
:class:`ContextScanner` — the push parser of :mod:`dockwright.tar.reader` with the build context's
rules — *before* each chunk is handed to the extractor, so that an entry is refused before anything is
written for it.  Names (and hard link targets) are cleaned as dockerd's chrooted ``Untar`` places them: like
Go's ``filepath.Clean`` from the context's root, ``..`` stopping there and absolute names below it (``../foo``
and ``/foo`` are ``foo``); every entry is written at that name, by either extractor.  Refused: any entry (or
hard link target) below a symlink of the archive
(the docker CLI and docker-py never write one; dockerd would follow it inside the context), symlinks the
extractor would have to write through, hard links to entries not in the archive, names with a component
longer than ``NAME_MAX`` or a path that would not fit in ``PATH_MAX`` below the destination, names more than
:data:`MAX_DEPTH` directories deep, link targets longer than ``PATH_MAX``, and PAX global headers that rename,
relink or resize the entries after them (GNU tar applies those, Go's reader does not: the scanner must see the
names tar writes).  A truncated or corrupt stream is refused by the parser.  Refusals are
:class:`~dockwright.errors.InvalidArgument` (HTTP 400) naming the entry; so are GNU tar's own "Cannot …"
errors for an entry (500 only for the host's: disk full, I/O error).

The checks are not what keeps the writes inside the destination, because two tar parsers never agree on
every byte: GNU tar runs confined by the kernel (Landlock: it may create, write and remove files only below
the destination; :func:`gnu_tar` is None where the kernel cannot confine it), and the Python extractor
(:class:`~dockwright.layers.apply.TarExtractor`) resolves every path from a directory descriptor, never
following a symlink out of the destination.  GNU tar adds its own defence: symlinks with absolute or ``..``
targets are created only at the end (placeholders until then).

File bodies are hashed by a helper thread, chunk by chunk in order, while this thread parses the next chunk
(and, with GNU tar, tar unpacks the last one).  On the way, every entry's tarsum — the hash dockerd's COPY/ADD
checksums are made of (see :mod:`~dockwright.builder.srchash`) — is computed from its header and body (sha256;
hashlib releases the GIL), so the COPY cache key does not read the context a second time.  The directories'
modes and mtimes are reported so that they can be restored after ``.dockerignore`` pruned files in them.
Files are owned by the daemon's user (``--no-same-owner``), with either extractor.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..errors import DataCorrupted, DockwrightError, InvalidArgument, SystemError_
from ..layers.extract import ExtractRules, TarExtractor
from ..tar.headers import BadNumber, parse_numeric
from ..tar.reader import STATE_HEADER, STATE_META, TarInspector
from .confine import landlock_abi, restrict_writes_to, spawn_confined
from .srchash import context_entry_header

__all__ = ["ContextScanner", "CONTEXT_RULES", "extract_with_tar", "extract_with_python", "gnu_tar"]

log = logging.getLogger("dockwright.builder.extract")

_REG, _LINK, _SYMLINK, _DIR, _CONT, _SPARSE = 0x30, 0x31, 0x32, 0x35, 0x37, 0x53
_PAX_GLOBAL = 0x67
_READ = 1 << 20
_F_SETPIPE_SZ = 1031
_IN_FLIGHT = 4  # chunks handed to the hashing thread and not yet hashed
_NAME_MAX = 255  # bytes in one path component (Linux)
_PATH_MAX = 4096  # bytes in a path given to the kernel, with its NUL
#: directories an entry may be below: the builder (and Python's own shutil.rmtree) walk a context's tree
#: recursively, within Python's recursion limit
MAX_DEPTH = 400
#: PAX records that, in a global header, change what GNU tar makes of the entries after it
_GLOBAL_REFUSED = (b"path", b"linkpath", b"size", b"GNU.sparse.")

#: what the Python extractor keeps of a context, as GNU tar does: no owners (the daemon's, as with
#: ``--no-same-owner``), no devices or fifos, no extended attributes, hard links without their own mode;
#: directory modes set by the caller after ``.dockerignore``
CONTEXT_RULES = ExtractRules(owners=False, specials=False, xattrs=False, dir_modes=False, link_modes=False,
                             kind="build context", root="the build context")


@functools.cache
def _find_gnu_tar() -> str | None:
    path = shutil.which("tar")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if b"GNU tar" in out else None


@functools.cache
def gnu_tar() -> str | None:
    """The path of GNU tar when it can run confined (Landlock ABI 2 or later: hard links between
    directories need ``LANDLOCK_ACCESS_FS_REFER``), else None; looked up once."""
    path = _find_gnu_tar()
    if path is None:
        return None
    if landlock_abi() < 2:
        log.info("the kernel has no Landlock (ABI 2): build contexts are unpacked by the Python extractor")
        return None
    failed: list[OSError] = []

    def probe() -> None:  # a thread of its own, which the confinement dies with
        try:
            restrict_writes_to(tempfile.gettempdir(), landlock_abi())
        except OSError as exc:
            failed.append(exc)

    t = threading.Thread(target=probe, name="landlock-probe")
    t.start()
    t.join()
    if failed:
        log.info("Landlock cannot confine GNU tar here (%s): build contexts are unpacked by the Python extractor",
                 failed[0])
        return None
    return path


def _show(name: str) -> str:
    """``name`` quoted for a message, shortened if long."""
    return repr(name if len(name) <= 200 else name[:200] + "…")


def _refuse(name: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid build context: tar entry {_show(name)} {why}")


def clean_name(name: str) -> str:
    """Where dockerd's ``Untar`` puts the entry ``name`` (or a hard link's target): it unpacks a context chrooted
    into it, so the name is cleaned like Go's ``filepath.Clean`` from the context's root — ``..`` stops there,
    an absolute name is below it (``../foo``, ``/foo`` and ``a/../../foo`` are all ``foo``).  Relative, "" for
    the root itself."""
    if name and name[0] not in "./" and "//" not in name and "/." not in name:
        return name[:-1] if name[-1] == "/" else name  # already clean (the docker CLI's names)
    out: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if out:
                out.pop()
        elif part and part != ".":
            out.append(part)
    return "/".join(out)


def _has_dotdot(name: str) -> bool:
    """Whether ``name`` has a ``..`` component: GNU tar refuses such an entry ("Member name contains '..'") and
    places such a hard link target where dockerd does not (``a/b/../c`` is ``c`` there, ``a/c`` for dockerd)."""
    return ".." in name and "/../" in f"/{name}/"


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
        return parse_numeric(field)
    except BadNumber:
        return 0


class ContextScanner(TarInspector):
    """Checks every entry of a build context and computes its tarsum as the entry streams past.

    After :meth:`close`: :attr:`tarsums` maps ``rel`` → the hex tarsum v1 of the last entry at each path
    (what dockerd's ``remotecontext.FromArchive`` computes: :func:`~dockwright.builder.srchash.context_entry_header`
    of the raw header, then a regular file's bytes; "" for a sparse file, hashed from the file when needed),
    :attr:`dirs` lists ``(rel, mode, mtime)`` of the
    directory entries in archive order.  ``dest_len`` is the length in bytes of the destination's path: an
    entry whose path below it would not fit in ``PATH_MAX`` is refused.
    """

    def __init__(self, dest_len: int = 0, *, gnu_names: bool = False) -> None:
        super().__init__()
        self._room = _PATH_MAX - 1 - (dest_len + 1 if dest_len else 0)  # bytes left for a relative path
        self._gnu = gnu_names
        self._group = 0  # the stream offset of the first header block (meta headers included) of the entry read
        #: with ``gnu_names`` (GNU tar extracts): the stream offset of the first entry GNU tar would refuse or put
        #: somewhere else than its cleaned name says (its first header block); the Python extractor takes over
        #: from there
        self.takeover: int | None = None
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
            self.tarsums[rel] = "" if h is None else h.hexdigest()  # "": to be hashed from the file

    def close(self) -> Any:
        """End the scan: the last file's checksum is taken, then the inspector's summary."""
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

    def _dispatch(self, record: bytes, offset: int) -> None:
        if self._state == STATE_HEADER and not self._meta_pending:
            self._group = offset  # an entry's first header block (or a meta header of it)
        super()._dispatch(record, offset)

    def safe_end(self) -> int:
        """The stream offset up to which the bytes fed so far may go to the extractor: all of them, but the headers
        of an entry whose last header block has not been seen yet (its name may still change, see
        :attr:`takeover`)."""
        if self._meta_pending or self._state == STATE_META:
            return self._group
        return self._fed - len(self._buf)

    def _on_meta(self, body: bytes, offset: int) -> None:
        if self._meta_type == _PAX_GLOBAL and body:
            for key in self._parse_pax(body, offset):
                if key.startswith(_GLOBAL_REFUSED):
                    raise InvalidArgument(
                        f"invalid build context: the PAX global header at offset {offset} sets "
                        f"{key.decode('utf-8', 'replace')!r} for the entries after it")
        super()._on_meta(body, offset)

    def _check_length(self, rel: str, name: str) -> None:
        """Refuses a name that cannot be made below the destination (a component over ``NAME_MAX`` bytes or
        a path that would pass ``PATH_MAX``: the kernel's limits, which GNU tar would report) or is more than
        :data:`MAX_DEPTH` directories deep.  Called for names over ``NAME_MAX`` bytes only (shorter ones
        pass every check)."""
        depth = rel.count("/")
        if depth > MAX_DEPTH:
            raise _refuse(name, f"is {depth} directories deep: deeper than the {MAX_DEPTH} a build context may be")
        raw = rel.encode("utf-8", "surrogateescape")
        if len(raw) > self._room:
            raise _refuse(name, f"has a path of {len(raw)} bytes: longer than the {self._room} a build context "
                                f"entry can have here (PATH_MAX)")
        for part in raw.split(b"/"):
            if len(part) > _NAME_MAX:
                raise _refuse(name, f"has a name of {len(part)} bytes: longer than {_NAME_MAX} (NAME_MAX)")

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
            # Nothing is written through a symlink: the extractor would follow it (GNU tar at once when its
            # target is relative without "..", the Python extractor inside the context) while these checks
            # look at names only.  No docker client writes an entry below a symlink.
            if target.startswith("/") or ".." in target.split("/"):
                raise _refuse(name, "is written through a symlink that leaves the build context")
            raise _refuse(name, f"is written through the symlink {_show(parent)} of the archive "
                                f"(entries below a symlink are refused)")
        self._ok_parent = rel[:end]

    def _apply(self, typeflag: int, name_b: bytes, linkname_b: bytes, size: int) -> None:
        self._finish_file()
        name = name_b.decode("utf-8", "surrogateescape")
        rel = clean_name(name)
        if self._gnu and self.takeover is None and _has_dotdot(name):
            self.takeover = self._group
        if rel == "":
            if typeflag == _DIR:
                return
            raise _refuse(name, "is not a valid name")
        if len(name_b) > _NAME_MAX:
            self._check_length(rel, name)
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
            if len(linkname_b) >= _PATH_MAX:
                raise _refuse(name, f"is a symlink to a target of {len(linkname_b)} bytes: longer than "
                                    f"{_PATH_MAX - 1} (PATH_MAX)")
            self._links[rel] = link
        elif typeflag == _LINK:
            target = clean_name(link)
            if self._gnu and self.takeover is None and _has_dotdot(link):
                self.takeover = self._group
            if len(linkname_b) > _NAME_MAX:
                self._check_length(target, name)
            self._check_parents(target, name)
            if target == "" or target not in self._seen:
                raise _refuse(name, f"is a hard link to {_show(link)}, which is not in the archive")
            if target in self._links:
                self._links[rel] = self._links[target]  # a hard link to a symlink is that symlink
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


# GNU tar's messages that say something about the host, not the context (HTTP 500)
_HOST_ERRORS = ("No space left on device", "Disk quota exceeded", "Input/output error", "Read-only file system",
                "Cannot allocate memory", "memory exhausted", "Too many open files")
_TAR_PREFIX = re.compile(r"^\S*tar: ")


def _tar_lines(msg: str) -> list[str]:
    """GNU tar's error lines without its name, each shortened (a long entry name is kept at both ends)."""
    out = []
    for ln in msg.splitlines():
        if "Exiting with failure" in ln or not ln.strip():
            continue
        ln = _TAR_PREFIX.sub("", ln)
        out.append(ln if len(ln) <= 400 else ln[:200] + "…" + ln[-150:])
    return out


def extract_with_tar(tar: str, read: Callable[[int], bytes], dest: str) -> ContextScanner:
    """Extract the tar stream ``read`` gives (``read(n)`` → bytes, b"" at the end) into ``dest`` with GNU tar
    (``tar`` from :func:`gnu_tar`), confined by Landlock to writing below ``dest``.

    GNU tar refuses a name with a ``..`` component, which dockerd cleans (:func:`clean_name`), and places a hard link
    target with one elsewhere (:func:`_has_dotdot`): no docker client writes one, but from the first such entry
    on (the scanner's :attr:`~ContextScanner.takeover`) the Python extractor unpacks the rest of the stream,
    after GNU tar has finished.  GNU tar is only given an entry once all its header blocks were scanned, so that it
    never sees part of the entry the Python extractor starts with.

    Blocking (a worker thread).  Raises :class:`InvalidArgument` for a refused entry or one GNU tar could not
    make (its message names it: an over-long name, a parent that is not a directory, …),
    :class:`DataCorrupted` for a corrupt or truncated stream, :class:`SystemError_` when the host failed
    (disk full, I/O error).
    """
    scanner = ContextScanner(len(os.fsencode(dest)), gnu_names=True)
    err = tempfile.TemporaryFile()
    try:
        proc = spawn_confined(
            [tar, "-x", "-f", "-", "-C", dest, "--no-same-owner", "--warning=no-timestamp",
             "--warning=no-unknown-keyword", "--no-overwrite-dir"],
            dest, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, close_fds=True,
        )
    except BaseException:
        err.close()
        raise
    assert proc.stdin is not None
    fd = proc.stdin.fileno()
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _READ)  # tar unpacks a whole chunk while the next one is hashed
    except OSError:
        pass
    ok = False
    open_ = True  # tar still reads
    held: deque[memoryview] = deque()  # scanned, not given to tar yet: the headers of an entry not complete yet
    held_at = 0  # the stream offset of held[0]

    def write(out: memoryview) -> None:
        nonlocal open_
        while open_ and out:
            try:
                out = out[os.write(fd, out):]
            except BrokenPipeError:
                open_ = False  # tar stopped reading: end of archive, or an error reported below

    def send(upto: int | None) -> None:
        """Give tar the held bytes below the stream offset ``upto`` (all of them: None)."""
        nonlocal held_at
        while held and (upto is None or held_at < upto):
            piece = held[0]
            k = len(piece) if upto is None else min(len(piece), upto - held_at)
            write(piece[:k])
            if k == len(piece):
                held.popleft()
            else:
                held[0] = piece[k:]
            held_at += k

    try:
        while True:
            data = read(_READ)
            if not data:
                break
            scanner.feed(data)  # refuses a hostile entry before tar sees the chunk holding it
            held.append(memoryview(data))
            send(scanner.takeover if scanner.takeover is not None else scanner.safe_end())
            scanner.hash_pending()
            if scanner.takeover is not None:
                write(memoryview(bytes(1024)))  # the end of tar's part (an empty archive is an error to it)
                break
        if scanner.takeover is None:
            send(None)
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
        scanner.shutdown()
        text = "; ".join(_tar_lines(msg)[:3]) or f"tar exited with {rc}"
        if any(h in msg for h in _HOST_ERRORS):
            raise SystemError_("error extracting build context: " + text)
        if "Cannot " in msg or "Permission denied" in msg:  # an entry tar could not make: it names it
            raise InvalidArgument("invalid build context: " + text)
        raise DataCorrupted("invalid build context: " + text)
    if scanner.takeover is not None:
        log.info("build context: an entry name with '..' at offset %d: the Python extractor unpacks the rest",
                 scanner.takeover)
        _extract_python(_Scanned(read, scanner, held), scanner, dest)
    return scanner


class _Scanned(io.RawIOBase):
    """The stream ``read`` gives, every byte fed to ``scanner`` before :mod:`tarfile` sees it; ``first``: pieces
    that come before, already fed."""

    def __init__(self, read: Callable[[int], bytes], scanner: ContextScanner,
                 first: deque[memoryview] | None = None) -> None:
        super().__init__()
        self._read = read
        self._scanner = scanner
        self._first = first if first is not None else deque()
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not self._buf:
            if self._first:
                self._buf = self._first.popleft()
            else:
                data = self._read(_READ)
                if not data:
                    return 0
                self._scanner.feed(data)  # refuses a hostile entry before it is extracted
                self._scanner.hash_pending()
                self._buf = memoryview(data)
        k = min(len(b), len(self._buf))
        b[:k] = self._buf[:k]
        self._buf = self._buf[k:]
        return k

    def drain(self) -> None:
        """Feed the rest (end-of-archive blocks, trailing data) to the scanner."""
        self._buf = memoryview(b"")
        self._first.clear()
        while data := self._read(_READ):
            self._scanner.feed(data)
            self._scanner.hash_pending()


def extract_with_python(read: Callable[[int], bytes], dest: str) -> ContextScanner:
    """:func:`extract_with_tar` without GNU tar: the same checks and tarsums, the files written by
    :class:`~dockwright.layers.apply.TarExtractor` (:data:`CONTEXT_RULES`), which resolves every path from
    ``dest``'s descriptor and never writes outside it.  Same errors."""
    scanner = ContextScanner(len(os.fsencode(dest)))
    _extract_python(_Scanned(read, scanner), scanner, dest)
    return scanner


def _extract_python(src: _Scanned, scanner: ContextScanner, dest: str) -> None:
    """Unpack what ``src`` reads (from an entry's first header block) into ``dest``, each entry at its cleaned
    name (:func:`clean_name`), then close ``scanner``."""
    ext = TarExtractor(dest, CONTEXT_RULES)
    ok = False
    try:
        try:
            tf = tarfile.open(fileobj=src, mode="r|",
                              bufsize=1 << 16, encoding="utf-8", errors="surrogateescape")
        except tarfile.ReadError as exc:
            if "empty file" not in str(exc):
                raise
            tf = None  # no entry at all: the scanner decides
        if tf is not None:
            for member in tf:
                tf.members.clear()  # type: ignore[attr-defined]  # stream mode would keep every header
                member.name = clean_name(member.name)  # where dockerd puts it (the scanner checked that name)
                if member.islnk():
                    member.linkname = clean_name(member.linkname)
                ext.entry(tf, member)
        ext.finish_dirs()
        src.drain()
        scanner.close()
        ok = True
    except DockwrightError:
        raise
    except (tarfile.TarError, EOFError, UnicodeError) as exc:
        raise DataCorrupted(f"invalid build context: {exc}") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE,
                         errno.ENFILE):
            raise SystemError_(f"error extracting build context: {exc}") from exc
        raise InvalidArgument(f"invalid build context: {exc}") from exc
    finally:
        ext.close()
        if not ok:
            scanner.shutdown()
