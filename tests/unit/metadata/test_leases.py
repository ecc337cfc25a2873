"""Unit tests of metadata/leases.py on a real database in tmp_path: leases are created, hold resources, expire,
die with their process, and the GC lock's ordering."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from dockwright.metadata.db import MetadataDB
from dockwright.metadata.leases import DEFAULT_TTL, RESOURCE_KINDS, GCLock, LeaseManager, boot_id


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    d = MetadataDB(tmp_path / "meta.db")
    yield d  # type: ignore[misc]
    d.close()


def test_create_records_kind_owner_and_expiry(db: MetadataDB) -> None:
    m = LeaseManager(db, pid=4242, boot="boot-a")
    before = time.time()
    lease = m.create("pull", ttl=60.0, mark=7)
    assert lease.kind == "pull" and lease.mark == 7 and lease.id.startswith("pull-")
    [info] = m.list()
    assert (info.id, info.kind, info.pid, info.boot_id) == (lease.id, "pull", 4242, "boot-a")
    assert before <= info.created <= time.time()
    assert info.expires == pytest.approx(info.created + 60.0)
    assert m.create("pull").id != lease.id


def test_default_owner_is_this_process_on_this_boot(db: MetadataDB) -> None:
    m = LeaseManager(db)
    assert (m.pid, m.boot_id) == (os.getpid(), boot_id())
    m.create("pull").add("content", "sha256:a")
    assert m.live_resources()["content"] == {"sha256:a"}  # its own leases are live
    assert DEFAULT_TTL == 24 * 3600.0
    assert RESOURCE_KINDS == ("content", "ingest", "snapshot", "tmp")
    b = boot_id()
    assert b == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_resources_are_held_while_the_lease_lives(db: MetadataDB) -> None:
    m = LeaseManager(db, pid=1, boot="b")
    lease = m.create("save")
    lease.add("content", "sha256:a")
    lease.add_many("snapshot", ["s2", "s1"])
    lease.add("content", "sha256:a")  # twice: once
    assert m.resources(lease.id) == [("content", "sha256:a"), ("snapshot", "s1"), ("snapshot", "s2")]
    live = m.live_resources()
    assert live["content"] == {"sha256:a"} and live["snapshot"] == {"s1", "s2"}
    assert live["ingest"] == set() and live["tmp"] == set()
    m.remove_resource(lease.id, "snapshot", "s1")
    assert m.live_resources()["snapshot"] == {"s2"}
    lease.release()
    assert m.list() == [] and m.resources(lease.id) == []
    assert m.live_resources()["content"] == set()
    lease.release()  # twice is harmless
    assert lease.released


def test_a_released_lease_takes_no_more_resources(db: MetadataDB) -> None:
    m = LeaseManager(db, pid=1, boot="b")
    lease = m.create("build")
    lease.release()
    lease.add("content", "sha256:late")
    assert db.query("SELECT COUNT(*) FROM lease_resources")[0][0] == 0
    m.add_resources("no-such-lease", [("tmp", "x")])
    assert db.query("SELECT COUNT(*) FROM lease_resources")[0][0] == 0


def test_expired_leases_hold_nothing_and_extend_revives(db: MetadataDB) -> None:
    m = LeaseManager(db, pid=1, boot="b")
    lease = m.create("pull", ttl=10.0)
    lease.add("content", "sha256:x")
    now = time.time()
    assert m.live_resources(now)["content"] == {"sha256:x"}
    assert m.live_resources(now + 11)["content"] == set()
    lease.extend(100.0)
    assert m.live_resources(now + 11)["content"] == {"sha256:x"}
    assert m.live_resources(now + 101)["content"] == set()


def test_leases_of_another_process_or_boot_are_dead(db: MetadataDB) -> None:
    old = LeaseManager(db, pid=100, boot="b")
    other_boot = LeaseManager(db, pid=200, boot="a")
    old.create("pull").add("content", "sha256:old")
    other_boot.create("pull").add("content", "sha256:boot")
    me = LeaseManager(db, pid=200, boot="b")
    mine = me.create("pull")
    mine.add("content", "sha256:mine")
    expired = me.create("pull", ttl=-1.0)
    expired.add("content", "sha256:expired")
    assert me.live_resources()["content"] == {"sha256:mine"}
    assert me.drop_dead() == 3
    assert [i.id for i in me.list()] == [mine.id]
    assert db.query("SELECT DISTINCT lease_id FROM lease_resources") == [(mine.id,)]
    assert me.drop_dead() == 0


def test_drop_dead_removes_orphaned_resources(db: MetadataDB) -> None:
    m = LeaseManager(db, pid=1, boot="b")
    with db.tx() as c:
        c.execute("INSERT INTO lease_resources(lease_id, kind, ref) VALUES ('ghost', 'tmp', 'x')")
    m.drop_dead()
    assert db.query("SELECT COUNT(*) FROM lease_resources")[0][0] == 0


def test_lease_resources_primary_key(db: MetadataDB) -> None:
    LeaseManager(db, pid=1, boot="b")
    with pytest.raises(sqlite3.IntegrityError):
        with db.tx() as c:
            c.execute("INSERT INTO lease_resources(lease_id, kind, ref) VALUES ('l', 'tmp', 'x')")
            c.execute("INSERT INTO lease_resources(lease_id, kind, ref) VALUES ('l', 'tmp', 'x')")


def test_leases_survive_a_reopen_but_die_with_their_process(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    db = MetadataDB(path)
    LeaseManager(db, pid=1, boot="b").create("pull").add("content", "sha256:a")
    db.close()
    db2 = MetadataDB(path)
    try:
        assert len(LeaseManager(db2, pid=1, boot="b").list()) == 1
        restarted = LeaseManager(db2, pid=2, boot="b")
        assert restarted.live_resources()["content"] == set()
        assert restarted.drop_dead() == 1
    finally:
        db2.close()


def test_hold_is_the_shared_side_of_the_gc_lock(db: MetadataDB) -> None:
    m = LeaseManager(db, pid=1, boot="b")
    lease = m.create("pull")
    got_exclusive = threading.Event()

    def collector() -> None:
        with m.lock.exclusive():
            got_exclusive.set()

    with lease.hold():
        t = threading.Thread(target=collector)
        t.start()
        assert not got_exclusive.wait(0.2)  # the collector waits for the holder
        lease.add("content", "sha256:a")  # adding nests inside the hold, same thread: no deadlock
    t.join(5)
    assert got_exclusive.is_set()


def test_a_waiting_collector_goes_before_new_shared_holders() -> None:
    lock = GCLock()
    order: list[str] = []
    first_in = threading.Event()
    release_first = threading.Event()

    def reader(name: str, hold: threading.Event | None) -> None:
        with lock.shared():
            order.append(name)
            if hold is not None:
                first_in.set()
                hold.wait(5)

    def writer() -> None:
        with lock.exclusive():
            order.append("gc")

    r1 = threading.Thread(target=reader, args=("r1", release_first))
    r1.start()
    assert first_in.wait(5)
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(1.0)  # the collector is queued behind r1 (generous: the machine is shared)
    r2 = threading.Thread(target=reader, args=("r2", None))
    r2.start()
    time.sleep(0.1)
    assert order == ["r1"]  # r2 does not overtake the waiting collector
    release_first.set()
    for t in (r1, w, r2):
        t.join(5)
    assert order == ["r1", "gc", "r2"]
