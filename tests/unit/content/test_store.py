"""Content store conformance: verify on commit, resume, already exists, concurrent writers, no partial blobs."""

from __future__ import annotations

import hashlib
import threading

import pytest

from dockwright.content.store import BlobNotFound, ContentStore
from dockwright.errors import DataCorrupted


def _d(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_commit_verifies_digest_and_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cs = ContentStore(tmp_path)
    w = cs.writer()
    w.write(b"hello")
    with pytest.raises(DataCorrupted):
        w.commit(_d(b"other"))
    assert not cs.exists(_d(b"hello"))
    assert list(cs.ingests()) == []
    w = cs.writer()
    w.write(b"hello")
    with pytest.raises(DataCorrupted):
        w.commit(expected_size=4)
    w = cs.writer()
    w.write(b"hel")
    assert not cs.exists(_d(b"hello"))  # invisible until commit
    w.write(b"lo")
    assert w.commit(_d(b"hello"), 5) == _d(b"hello")
    assert cs.read(_d(b"hello")) == b"hello"
    assert cs.size(_d(b"hello")) == 5
    with pytest.raises(BlobNotFound):
        cs.open(_d(b"nope"))


def test_resume_rehashes_prefix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cs = ContentStore(tmp_path)
    data = bytes(range(256)) * 1000
    w = cs.writer("pull-abc")
    w.write(data[:1000])
    w.close()  # interrupted, kept
    cs2 = ContentStore(tmp_path)  # "restart"
    w = cs2.writer("pull-abc", resume=True)
    assert w.offset == 1000
    w.write(data[1000:])
    assert w.commit(_d(data), len(data)) == _d(data)
    assert cs2.read(_d(data)) == data


def test_already_exists_and_put(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cs = ContentStore(tmp_path)
    d1 = cs.put(b"x")
    d2 = cs.put(b"x")
    assert d1 == d2 == _d(b"x")
    w = cs.writer()
    w.write(b"x")
    assert w.commit() == d1
    assert sorted(cs.walk()) == [d1]
    with pytest.raises(DataCorrupted):
        cs.put(b"y", expected_digest=d1)


def test_concurrent_writers_same_content(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cs = ContentStore(tmp_path)
    data = b"z" * (1 << 20)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            w = cs.writer()
            for i in range(0, len(data), 65536):
                w.write(data[i:i + 65536])
            w.commit(_d(data))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cs.read(_d(data)) == data
    assert list(cs.ingests()) == []


def test_invalid_digest_rejected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cs = ContentStore(tmp_path)
    assert not cs.exists("sha256:../../etc/passwd")
    assert not cs.exists("sha256:" + "a" * 64 + "\n")
