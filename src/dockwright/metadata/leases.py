"""Leases: what the operations in flight hold, recorded in the metadata database (containerd's ``core/leases``).

A lease is an id with a kind (``pull``, ``save``, ``build``…), a creation time, an expiry and its owner — the
daemon's pid and the kernel's boot id — and a set of resources: ``content`` (blob digests), ``ingest`` (ingest
refs), ``snapshot`` (snapshot keys or names) and ``tmp`` (names under ``<data-root>/tmp``). A resource may be added
before it exists: that is how an operation claims a blob it is about to write, or one it found already stored
("Already exists") before the collector could take it.

A lease is live while it has not expired and its owner is this process; every lease of a previous process is
dead (:meth:`LeaseManager.drop_dead` removes them at start-up), so a crashed operation's lease dies with it.

:class:`GCLock` is the one lock the garbage collector takes, exclusively, around mark and sweep; adding a
resource takes it shared. A resource added to a lease is therefore either seen by a collection's mark, or added
after that collection's sweep has finished — never lost in between.
"""

from __future__ import annotations

import builtins
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from .db import MetadataDB

__all__ = ["GCLock", "Lease", "LeaseManager", "LeaseInfo", "DEFAULT_TTL", "RESOURCE_KINDS"]

DEFAULT_TTL = 24 * 3600.0  # containerd's default for a pull's lease
RESOURCE_KINDS = ("content", "ingest", "snapshot", "tmp")

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    pid INTEGER NOT NULL,
    boot_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_resources (
    lease_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    PRIMARY KEY (lease_id, kind, ref)
);
CREATE INDEX IF NOT EXISTS lease_resources_ref ON lease_resources(kind, ref);
"""


def boot_id() -> str:
    """The kernel's boot id (empty when it cannot be read): with the pid, a lease's owner."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


class GCLock:
    """A readers–writer lock: operations share it while they add resources (or publish a blob and lease it);
    the collector holds it alone. Shared holds nest within a thread; a waiting collector goes before new
    shared holders, so it is never starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0
        self._local = threading.local()

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock shared (nests within a thread): while adding resources to a lease."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._writer or self._waiting:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._readers -= 1
                    if not self._readers:
                        self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock alone: the collector's mark and sweep."""
        with self._cond:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """One stored lease: id, kind, times and owner."""

    id: str
    kind: str
    created: float
    expires: float
    pid: int
    boot_id: str


@dataclass(eq=False)
class Lease:
    """A handle on one lease (what :data:`dockwright.content.store.current_lease` holds)."""

    manager: LeaseManager
    id: str
    kind: str
    #: the collector's deletion count when the lease was taken (a collection is due at release if it moved)
    mark: int = 0
    released: bool = field(default=False)

    def add(self, kind: str, ref: str) -> None:
        """Add one resource (``kind`` of :data:`RESOURCE_KINDS`, its ref) to the lease."""
        self.manager.add_resources(self.id, [(kind, ref)])

    def add_many(self, kind: str, refs: Iterable[str]) -> None:
        """Add resources of one kind to the lease."""
        self.manager.add_resources(self.id, [(kind, r) for r in refs])

    def hold(self) -> AbstractContextManager[None]:
        """The GC lock held shared, to publish something and lease it with no collection in between."""
        return self.manager.lock.shared()

    def extend(self, ttl: float = DEFAULT_TTL) -> None:
        """Push the lease's expiry ``ttl`` seconds from now."""
        self.manager.extend(self.id, ttl)

    def release(self) -> None:
        """Delete the lease (its resources become collectable)."""
        if not self.released:
            self.released = True
            self.manager.delete(self.id)


class LeaseManager:
    """The leases of one metadata database, owned by this process (pid and boot id)."""

    def __init__(self, db: MetadataDB, *, pid: int | None = None, boot: str | None = None) -> None:
        self.db = db
        db.executescript(SCHEMA)
        self.lock = GCLock()
        self.pid = os.getpid() if pid is None else pid
        self.boot_id = boot_id() if boot is None else boot

    def create(self, kind: str, *, ttl: float = DEFAULT_TTL, mark: int = 0) -> Lease:
        """A new lease of ``kind`` expiring in ``ttl`` seconds; ``mark`` is the GC deletion count at its start."""
        now = time.time()
        lease_id = f"{kind}-{time.time_ns()}-{os.urandom(4).hex()}"
        with self.db.tx() as c:
            c.execute("INSERT INTO leases(id, kind, created, expires, pid, boot_id) VALUES (?,?,?,?,?,?)",
                      (lease_id, kind, now, now + ttl, self.pid, self.boot_id))
        return Lease(self, lease_id, kind, mark)

    def add_resources(self, lease_id: str, resources: list[tuple[str, str]]) -> None:
        """Record resources of a lease (a lease already deleted takes none: its operation has ended)."""
        if not resources:
            return
        with self.lock.shared():
            with self.db.tx() as c:
                if c.execute("SELECT 1 FROM leases WHERE id=?", (lease_id,)).fetchone() is None:
                    return
                c.executemany("INSERT OR IGNORE INTO lease_resources(lease_id, kind, ref) VALUES (?,?,?)",
                              [(lease_id, k, r) for k, r in resources])

    def remove_resource(self, lease_id: str, kind: str, ref: str) -> None:
        """Drop one resource from a lease."""
        with self.db.tx() as c:
            c.execute("DELETE FROM lease_resources WHERE lease_id=? AND kind=? AND ref=?", (lease_id, kind, ref))

    def extend(self, lease_id: str, ttl: float = DEFAULT_TTL) -> None:
        """Push a lease's expiry ``ttl`` seconds from now."""
        with self.db.tx() as c:
            c.execute("UPDATE leases SET expires=? WHERE id=?", (time.time() + ttl, lease_id))

    def delete(self, lease_id: str) -> None:
        """Delete a lease and its resources."""
        with self.db.tx() as c:
            c.execute("DELETE FROM lease_resources WHERE lease_id=?", (lease_id,))
            c.execute("DELETE FROM leases WHERE id=?", (lease_id,))

    def list(self) -> list[LeaseInfo]:
        """Every lease, oldest first."""
        return [LeaseInfo(*r) for r in self.db.query(
            "SELECT id, kind, created, expires, pid, boot_id FROM leases ORDER BY created")]

    def resources(self, lease_id: str) -> builtins.list[tuple[str, str]]:
        """The (kind, ref) resources of a lease."""
        return [(r[0], r[1]) for r in self.db.query(
            "SELECT kind, ref FROM lease_resources WHERE lease_id=? ORDER BY kind, ref", (lease_id,))]

    def live_resources(self, now: float | None = None) -> dict[str, set[str]]:
        """Resources of the live leases (not expired, owned by this process), by kind. Call it under the lock."""
        now = time.time() if now is None else now
        out: dict[str, set[str]] = {k: set() for k in RESOURCE_KINDS}
        for kind, ref in self.db.query(
                "SELECT r.kind, r.ref FROM lease_resources r JOIN leases l ON l.id = r.lease_id "
                "WHERE l.expires > ? AND l.pid = ? AND l.boot_id = ?", (now, self.pid, self.boot_id)):
            out.setdefault(kind, set()).add(ref)
        return out

    def drop_dead(self, now: float | None = None) -> int:
        """Delete expired leases and those of another process (a previous daemon's). Returns how many."""
        now = time.time() if now is None else now
        with self.db.tx() as c:
            dead = [r[0] for r in c.execute("SELECT id FROM leases WHERE expires <= ? OR pid != ? OR boot_id != ?",
                                             (now, self.pid, self.boot_id))]
            for lease_id in dead:
                c.execute("DELETE FROM lease_resources WHERE lease_id=?", (lease_id,))
                c.execute("DELETE FROM leases WHERE id=?", (lease_id,))
            c.execute("DELETE FROM lease_resources WHERE lease_id NOT IN (SELECT id FROM leases)")
        return len(dead)
