"""RegistryClient.push_blob_stream against the real Distribution registry: a blob whose digest is known only at its
end (a layer compressed while it is uploaded) goes up as one streamed PATCH (chunked transfer encoding), or in
PATCHes of a minimum size, then ``PUT ?digest=``; a failure cancels the upload."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from dockwright.distribution import RegistryClient, RegistryHosts
from dockwright.errors import DataCorrupted, DockwrightError
from dockwright.reference import parse_normalized_named

from registry import FaultProxy, Registry, registry  # noqa: F401  (fixtures)


class _Source:
    """Pieces of ``data``, hashed as they are handed out (what the push's gzip source does)."""

    def __init__(self, data: bytes, piece: int = 70_000, fail_at: int | None = None) -> None:
        self.data, self.piece, self.fail_at = data, piece, fail_at
        self.h = hashlib.sha256()
        self.n = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), self.piece):
            if self.fail_at is not None and i >= self.fail_at:
                raise DataCorrupted("the source broke")
            part = self.data[i:i + self.piece]
            self.h.update(part)
            self.n += len(part)
            await asyncio.sleep(0)
            yield part

    def result(self) -> tuple[str, int]:
        return "sha256:" + self.h.hexdigest(), self.n


def _run(proxy: FaultProxy, fn):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with RegistryClient(RegistryHosts(certs_dirs=[])) as client:
            repo = client.repository(parse_normalized_named(f"{proxy.host}/stream/blob"), None, push=True)
            return await fn(repo)
    return asyncio.run(main())


def test_streamed_and_chunked_uploads(registry: Registry) -> None:
    data = os.urandom(1_000_003)
    with FaultProxy(registry) as proxy:
        src = _Source(data)
        digest, size = _run(proxy, lambda repo: repo.push_blob_stream(src.chunks(), src.result))
        assert (digest, size) == ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
        methods = [(m, s) for m, _, s in proxy.requests]
        assert methods == [("GET", 401), ("GET", 200), ("POST", 202), ("PATCH", 202), ("PUT", 201)] or \
            methods[-3:] == [("POST", 202), ("PATCH", 202), ("PUT", 201)]
        assert registry.client().get_blob("stream/blob", digest).content == data
        proxy.reset()
        data2 = os.urandom(250_000)
        src2 = _Source(data2, piece=33_333)
        digest2, _ = _run(proxy, lambda repo: repo.push_blob_stream(src2.chunks(), src2.result, chunk_min=100_000))
        patches = [m for m, _, _ in proxy.requests if m == "PATCH"]
        assert len(patches) == 3  # 100000 + 100000 + 50000
        assert registry.client().get_blob("stream/blob", digest2).content == data2


def test_a_failing_source_cancels_the_upload(registry: Registry) -> None:
    with FaultProxy(registry) as proxy:
        src = _Source(os.urandom(500_000), fail_at=200_000)
        with pytest.raises(DockwrightError, match="the source broke"):
            _run(proxy, lambda repo: repo.push_blob_stream(src.chunks(), src.result))
        assert [m for m, _, _ in proxy.requests][-1] == "DELETE"  # the upload is cancelled
        assert not [m for m, _, _ in proxy.requests if m == "PUT"]
