"""Blob uploads of a repository: cross-repository mounts, monolithic or chunked pushes of a blob of known digest,
and the push of a blob whose digest is known only at its end (PATCHed as it is made, closed with ``PUT ?digest=``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import ClientResponse

from ..errors import DataCorrupted, DockwrightError, SystemError_
from .auth import repository_scope
from .hosts import Endpoint
from .repository import RepositoryCore
from .transport import join_location, with_query

__all__ = ["BlobUploads"]


class BlobUploads(RepositoryCore):
    """The blob uploads of a :class:`~dockwright.distribution.client.Repository`."""

    async def mount_blob(self, digest: str, from_repo: str) -> bool:
        """Cross-repository mount: True when the registry mounted it (201); on 202 the upload it started is
        cancelled and False is returned. ``from_repo`` is a path in the same registry ("library/busybox")."""
        if "/" in from_repo and from_repo.split("/", 1)[0] == self.ref.domain:
            from_repo = from_repo.split("/", 1)[1]
        scopes = [self.scope, repository_scope(from_repo, ["pull"])]

        async def op(ep: Endpoint) -> bool:
            url = with_query(self._url(ep, "blobs/uploads/"), mount=digest, **{"from": from_repo})
            resp = await self._send(ep, "POST", url, data=b"", scopes=scopes,
                                    headers={"Content-Type": "application/octet-stream"})
            if resp.status == 201:
                resp.release()
                return True
            if resp.status == 202:
                location = resp.headers.get("Location")
                resp.release()
                if location:
                    await self._cancel_upload(ep, join_location(url, location), scopes)
                return False
            raise await self._error(resp, "POST", url)
        return await self._run(op)

    async def _cancel_upload(self, ep: Endpoint, url: str, scopes: list[str] | None = None) -> None:
        try:
            resp = await self._send(ep, "DELETE", url, scopes=scopes)
            resp.release()
        except DockwrightError:
            pass

    async def _start_upload(self, ep: Endpoint) -> tuple[Endpoint, int, str, int | None]:
        url = self._url(ep, "blobs/uploads/")
        resp = await self._send(ep, "POST", url, data=b"", headers={"Content-Type": "application/octet-stream"})
        if resp.status not in (201, 202):
            raise await self._error(resp, "POST", url)
        location = resp.headers.get("Location", "")
        min_len = resp.headers.get("OCI-Chunk-Min-Length", "")
        resp.release()
        if resp.status == 202 and not location:
            raise SystemError_(f"registry answered {url} without a Location for the upload")
        return (ep, resp.status, join_location(url, location) if location else "",
                int(min_len) if min_len.isdigit() else None)

    async def push_blob(self, digest: str, size: int, chunks: AsyncIterator[bytes], *,
                        progress: Callable[[int], None] | None = None, chunk_min: int | None = None) -> None:
        """Upload a blob: POST an upload, then one streamed PUT, or PATCH chunks then PUT ``?digest=``.

        Chunks are used when the registry asks for a minimum (``OCI-Chunk-Min-Length``) or ``chunk_min`` is
        given, and the blob is bigger than that: each PATCH carries at least that many bytes (the last may be
        shorter) and a ``Range`` answer that acknowledges less is resent from there. ``progress`` is called with
        the total bytes sent so far. A blob that does not have ``size`` bytes is DataCorrupted.
        """
        ep, status, location, oci_min = await self._run(self._start_upload)
        if status == 201:  # the registry has it already
            await _aclose(chunks)
            return
        if size == 0:
            await _aclose(chunks)
        chunk = max(chunk_min or 0, oci_min or 0)
        if chunk and size > chunk:
            await self._push_chunked(ep, digest, size, chunks, location, chunk, progress)
        else:
            await self._push_monolithic(ep, digest, size, chunks, location, progress)

    async def _send_streamed(self, ep: Endpoint, method: str, url: str, headers: dict[str, str],
                             body: AsyncIterator[bytes] | bytes, problem: Sequence[BaseException]) -> ClientResponse:
        """Send a body read from a stream; a failure of the stream itself (in ``problem``) is raised as itself,
        not as the transport error it caused."""
        try:
            resp = await self._send(ep, method, url, headers=headers, data=body, replayable=False)
        except DockwrightError:
            if problem:
                raise problem[0] from None
            raise
        if problem:
            resp.release()
            raise problem[0]
        return resp

    async def _push_monolithic(self, ep: Endpoint, digest: str, size: int, chunks: AsyncIterator[bytes],
                               location: str, progress: Callable[[int], None] | None) -> None:
        url = with_query(location, digest=digest)
        sent = 0
        problem: list[DockwrightError] = []

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            async for piece in chunks:
                if not piece:
                    continue
                if sent + len(piece) > size:
                    problem.append(DataCorrupted(f"blob {digest} is larger than its size {size}"))
                    raise problem[-1]
                sent += len(piece)
                yield piece
                if progress is not None:
                    progress(sent)
            if sent != size:
                problem.append(DataCorrupted(f"blob {digest} has {sent} bytes, expected {size}"))
                raise problem[-1]

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        resp = await self._send_streamed(ep, "PUT", url, headers, body() if size else b"", problem)
        if resp.status not in (200, 201, 204):
            raise await self._error(resp, "PUT", url)
        resp.release()

    async def _push_chunked(self, ep: Endpoint, digest: str, size: int, chunks: AsyncIterator[bytes],
                            location: str, chunk: int, progress: Callable[[int], None] | None) -> None:
        location, start = await self._patch_chunks(ep, digest, chunks, location, chunk, size=size, progress=progress)
        if start != size:
            await self._cancel_upload(ep, location)
            raise DataCorrupted(f"blob {digest} has {start} bytes, expected {size}")
        await self._commit_upload(ep, location, digest)

    async def _commit_upload(self, ep: Endpoint, location: str, digest: str) -> None:
        """The closing ``PUT <location>?digest=`` of an upload whose bytes were all sent by PATCH."""
        url = with_query(location, digest=digest)
        resp = await self._send(ep, "PUT", url, data=b"",
                                headers={"Content-Type": "application/octet-stream", "Content-Length": "0"})
        if resp.status not in (200, 201, 204):
            raise await self._error(resp, "PUT", url)
        resp.release()

    async def _patch_chunks(self, ep: Endpoint, label: str, chunks: AsyncIterator[bytes], location: str, chunk: int,
                            *, size: int | None = None,
                            progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        """PATCH ``chunks`` in pieces of ``chunk`` bytes (the last may be shorter), each with its Content-Range;
        a ``Range`` answer that acknowledges less is resent from there. Returns the upload's last location and
        the bytes sent. With ``size``, a stream that goes past it is DataCorrupted (``label`` names the blob)."""
        buf = bytearray()
        start = 0  # offset of buf[0] in the blob

        async def patch(piece: bytes, offset: int) -> None:
            nonlocal location
            sent_from = 0
            for _ in range(4):
                data = piece[sent_from:]
                first = offset + sent_from
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                           "Content-Range": f"{first}-{first + len(data) - 1}"}
                resp = await self._send(ep, "PATCH", location, headers=headers, data=data)
                end = offset + len(piece)
                location, acked = await self._patch_answer(resp, location, end)
                if acked >= end:
                    return
                if acked < offset:
                    raise SystemError_(f"registry acknowledged {acked} bytes of {label}, "
                                       f"{offset} were sent before")
                sent_from = acked - offset
            raise SystemError_(f"registry does not accept the bytes of {label} after {offset + sent_from}")

        async for piece in chunks:
            if not piece:
                continue
            buf += piece
            if size is not None and start + len(buf) > size:
                raise DataCorrupted(f"blob {label} is larger than its size {size}")
            while len(buf) >= chunk:
                out = bytes(buf[:chunk])
                await patch(out, start)
                del buf[:chunk]
                start += len(out)
                if progress is not None:
                    progress(start)
        if buf:
            out = bytes(buf)
            await patch(out, start)
            start += len(out)
            if progress is not None:
                progress(start)
        return location, start

    async def _patch_stream(self, ep: Endpoint, chunks: AsyncIterator[bytes], location: str) -> tuple[str, int]:
        """One PATCH whose body is the whole stream (chunked transfer encoding: its length is not known before
        its end). Returns the upload's next location and the bytes sent."""
        sent = 0
        problem: list[BaseException] = []

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            try:
                async for piece in chunks:
                    if piece:
                        sent += len(piece)
                        yield piece
            except Exception as exc:  # the source failed: surfaced as itself, not as aiohttp's write error
                problem.append(exc)
                raise

        resp = await self._send_streamed(ep, "PATCH", location, {"Content-Type": "application/octet-stream"}, body(),
                                         problem)
        location, acked = await self._patch_answer(resp, location, sent)
        if acked != sent:
            raise SystemError_(f"registry acknowledged {acked} bytes of an upload of {sent}")
        return location, sent

    async def _patch_answer(self, resp: ClientResponse, location: str, sent: int) -> tuple[str, int]:
        """A PATCH's answer: the upload's next location and the bytes the registry has (its ``Range``; ``sent``
        when it does not say); the registry's error for any status but 202 and 204."""
        if resp.status not in (202, 204):
            raise await self._error(resp, "PATCH", location)
        new_location = resp.headers.get("Location")
        rng = resp.headers.get("Range", "")
        resp.release()
        if new_location:
            location = join_location(location, new_location)
        acked = sent
        if rng:
            try:
                acked = int(rng.split("=", 1)[-1].split("-", 1)[1]) + 1
            except (IndexError, ValueError):
                acked = sent
        return location, acked

    async def push_blob_stream(self, chunks: AsyncIterator[bytes], result: Callable[[], tuple[str, int]], *,
                               chunk_min: int | None = None) -> tuple[str, int]:
        """Upload a blob whose digest is known only once its last byte is made (a layer compressed on the way).

        POST an upload, PATCH the stream (one streamed PATCH, or pieces of at least the registry's
        ``OCI-Chunk-Min-Length`` / ``chunk_min``), then ``PUT ?digest=`` with what ``result()`` answers once
        ``chunks`` is exhausted: ``(digest, size)``, which is returned. A failed upload is cancelled (DELETE).
        """
        ep, status, location, oci_min = await self._run(self._start_upload)
        if status != 202 or not location:
            raise SystemError_(f"registry did not start an upload for {self.ref.name} (status {status})")
        try:
            chunk = max(chunk_min or 0, oci_min or 0)
            if chunk:
                location, sent = await self._patch_chunks(ep, "upload", chunks, location, chunk)
            else:
                location, sent = await self._patch_stream(ep, chunks, location)
            digest, size = result()
            if sent != size:
                raise DataCorrupted(f"blob {digest} has {sent} bytes sent, {size} made")
            await self._commit_upload(ep, location, digest)
        except Exception:
            await _aclose(chunks)
            await self._cancel_upload(ep, location)
            raise
        return digest, size


async def _aclose(it: AsyncIterator[bytes]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing a source we will not read
            pass
