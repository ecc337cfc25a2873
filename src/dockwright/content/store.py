"""The blob store: ``blobs/sha256/<hex>`` written through resumable ingests that are invisible until committed.

A write goes to ``ingest/<ref>/data``; ``commit`` checks size and digest, fsyncs, renames into place and makes
the blob read-only. Readers therefore never see a partial blob. An ingest keyed by a stable ref survives a
restart and can be resumed (its kept prefix is re-hashed on open).

Leases: an operation in flight sets :data:`current_lease` (a context variable, so it follows the operation into
its worker threads). A writer opened under it adds its ingest to the lease, and a commit renames the blob into
place and adds it to the lease while holding the lease's guard — the garbage collector, which marks and sweeps
under the same guard, exclusively, therefore never sees a blob between "visible" and "leased". This module knows
no SQL: a lease is anything with ``add(kind, ref)`` and ``hold()``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import DataCorrupted, InvalidArgument, NotFound
from ..oci.digest import DIGEST_RE, hex_of

__all__ = ["ContentStore", "Writer", "BlobNotFound", "LeaseHolder", "current_lease", "TMP_INGEST_PREFIX"]

TMP_INGEST_PREFIX = "tmp-"


class LeaseHolder(Protocol):
    """What the content store needs of a lease: record a resource, and a guard that excludes a collection."""

    def add(self, kind: str, ref: str) -> None:
        """Record that the lease holds ``ref`` of ``kind`` (``content``: a digest, ``ingest``: an ingest ref)."""

    def hold(self) -> AbstractContextManager[object]:
        """A guard that keeps the garbage collector out while held (it marks and sweeps under the same guard)."""


#: The lease of the operation running in this context (None: no operation holds one).
current_lease: ContextVar[LeaseHolder | None] = ContextVar("dockwright_current_lease", default=None)


class BlobNotFound(NotFound):
    """No blob of ``digest`` in the store: containerd's ``content digest <digest>: not found`` (404)."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"content digest {digest}: not found")
        self.digest = digest


class Writer:
    """An open ingest. ``write`` hashes as it goes; ``commit`` verifies and publishes."""

    def __init__(self, store: ContentStore, ref: str, resume: bool) -> None:
        self._store = store
        self.ref = ref
        self._dir = store.ingest_dir / ref
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = self._dir / "data"
        lease = current_lease.get()
        if lease is not None and not ref.startswith(TMP_INGEST_PREFIX):  # tmp- ingests carry their pid
            lease.add("ingest", ref)
        self._h = hashlib.sha256()
        self.offset = 0
        if resume and self._path.exists():
            with open(self._path, "rb") as f:
                while chunk := f.read(1 << 20):
                    self._h.update(chunk)
                    self.offset += len(chunk)
            self._f: BinaryIO = open(self._path, "ab")
        else:
            self._f = open(self._path, "wb")
        self._closed = False

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` to the ingest file and to the running sha256; ``offset`` grows by its length."""
        self._f.write(data)
        self._h.update(data)
        self.offset += len(data)

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of everything written so far (the resumed prefix included)."""
        return "sha256:" + self._h.hexdigest()

    def truncate(self, size: int = 0) -> None:
        """Drop everything after ``size`` bytes and re-hash the kept prefix."""
        self._f.close()
        with open(self._path, "r+b") as f:
            f.truncate(size)
        self._h = hashlib.sha256()
        self.offset = 0
        with open(self._path, "rb") as f:
            while chunk := f.read(1 << 20):
                self._h.update(chunk)
                self.offset += len(chunk)
        self._f = open(self._path, "ab")

    def commit(self, expected_digest: str | None = None, expected_size: int | None = None, *,
               sync: bool = True) -> str:
        """Verify and publish. Returns the digest. An existing identical blob is kept (no error)."""
        digest = self.digest
        self._f.flush()
        if expected_size is not None and self.offset != expected_size:
            self.abort()
            raise DataCorrupted(f"unexpected commit size {self.offset}, expected {expected_size}")
        if expected_digest is not None and digest != expected_digest:
            self.abort()
            raise DataCorrupted(f"unexpected commit digest {digest}, expected {expected_digest}: failed precondition")
        if sync:
            os.fsync(self._f.fileno())
        self._f.close()
        self._closed = True
        target = self._store.path(digest)
        lease = current_lease.get()
        with lease.hold() if lease is not None else _nothing():
            if lease is not None:
                lease.add("content", digest)  # before it is visible (or reused): a collection keeps it
            if target.exists():
                shutil.rmtree(self._dir, ignore_errors=True)
                return digest
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self._path, 0o400)  # read-only, and only the daemon reads blobs
            os.rename(self._path, target)
        shutil.rmtree(self._dir, ignore_errors=True)
        return digest

    def abort(self) -> None:
        """Throw the ingest away."""
        if not self._closed:
            self._f.close()
            self._closed = True
        shutil.rmtree(self._dir, ignore_errors=True)

    def close(self) -> None:
        """Close but keep the ingest for a later resume."""
        if not self._closed:
            self._f.close()
            self._closed = True

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.abort()


class ContentStore:
    """Blobs under ``root``: every directory is 0700 (made so, or fixed on open), as only the daemon reads them."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        for d in (self.root, self.root / "blobs", self.blobs_dir, self.ingest_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.stat(d).st_mode & 0o7777 != 0o700:
                os.chmod(d, 0o700)

    def path(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives (``blobs/sha256/<hex>``), stored or not; InvalidArgument if malformed."""
        if not DIGEST_RE.match(digest):
            raise InvalidArgument(f"invalid digest: {digest!r}")
        return self.blobs_dir / hex_of(digest)

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored; False for a malformed digest too."""
        try:
            return self.path(digest).exists()
        except InvalidArgument:
            return False

    def size(self, digest: str) -> int:
        """The blob's size in bytes; BlobNotFound when it is not stored."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(digest) from exc

    def open(self, digest: str) -> BinaryIO:
        """The blob opened for binary reading (the caller closes it); BlobNotFound when it is not stored."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(digest) from exc

    def read(self, digest: str) -> bytes:
        """The whole blob in memory (manifests, configs); BlobNotFound when it is not stored."""
        with self.open(digest) as f:
            return f.read()

    def writer(self, ref: str | None = None, *, resume: bool = False) -> Writer:
        """Open an ingest. Without ``ref`` a unique one is made (not resumable across restarts)."""
        if ref is None:
            ref = f"{TMP_INGEST_PREFIX}{os.getpid()}-{time.monotonic_ns()}-{os.urandom(4).hex()}"
        if "/" in ref or ref.startswith("."):
            raise InvalidArgument(f"invalid ingest ref {ref!r}")
        return Writer(self, ref, resume)

    def put(self, data: bytes, expected_digest: str | None = None) -> str:
        """Store small bytes (manifests, configs) in one call."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected_digest is not None and digest != expected_digest:
            raise DataCorrupted(f"unexpected commit digest {digest}, expected {expected_digest}: failed precondition")
        lease = current_lease.get()
        if lease is not None:
            lease.add("content", digest)  # reused or written: leased first
        if self.exists(digest):
            return digest
        w = self.writer()
        w.write(data)
        return w.commit(digest, len(data), sync=False)

    def delete(self, digest: str) -> bool:
        """Unlink the blob: True if it was there (no lease or reference check: that is the caller's)."""
        try:
            self.path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def walk(self) -> Iterator[str]:
        """The digest of every stored blob, in directory order (what the garbage collector sweeps)."""
        for entry in os.scandir(self.blobs_dir):
            if len(entry.name) == 64:
                yield "sha256:" + entry.name

    def ingests(self) -> Iterator[tuple[str, float]]:
        """(ref, mtime) of every open ingest."""
        for entry in os.scandir(self.ingest_dir):
            try:
                yield entry.name, entry.stat().st_mtime
            except FileNotFoundError:
                continue

    def remove_ingest(self, ref: str) -> None:
        """Delete the ingest ``ref`` and its partial data, if it exists."""
        shutil.rmtree(self.ingest_dir / ref, ignore_errors=True)

    def ingest_size(self, ref: str) -> int:
        """How many bytes the ingest ``ref`` holds so far (where a resume starts); 0 when there is no such ingest."""
        try:
            return (self.ingest_dir / ref / "data").stat().st_size
        except OSError:
            return 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
