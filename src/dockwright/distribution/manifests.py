"""Manifests of a repository: resolve a tag or digest (HEAD then GET, digests verified, schema 1 refused as moby),
fetch, put, list tags; and the media type of a manifest whose Content-Type is generic.
"""

from __future__ import annotations

import hashlib
import json

import aiohttp

from ..errors import DataCorrupted, InvalidArgument, SystemError_
from ..oci.descriptor import Descriptor
from ..oci.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
)
from .errors import schema1_error, transport_error
from .hosts import Endpoint
from .repository import RepositoryCore
from .transport import join_location, read_limited, with_query

__all__ = ["ManifestOps", "MANIFEST_ACCEPT", "MAX_MANIFEST_SIZE", "manifest_media_type"]

MANIFEST_ACCEPT = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, DOCKER_MANIFEST_V1_SIGNED,
                   DOCKER_MANIFEST_V1)
MAX_MANIFEST_SIZE = 4 << 20
_SCHEMA1 = (DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED)


def manifest_media_type(content_type: str | None, body: bytes) -> str:
    """The media type of a manifest: its Content-Type, or what the body says when the header is generic."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct and ct not in ("application/json", "text/plain", "application/octet-stream", "binary/octet-stream"):
        return ct
    try:
        doc = json.loads(body)
    except ValueError:
        return ct
    if isinstance(doc, dict):
        mt = doc.get("mediaType")
        if isinstance(mt, str) and mt:
            return mt
        if doc.get("schemaVersion") == 1:
            return DOCKER_MANIFEST_V1_SIGNED if "signatures" in doc or ct == "application/json" else DOCKER_MANIFEST_V1
        if "manifests" in doc:
            return OCI_INDEX
        if "config" in doc or "layers" in doc:
            return OCI_MANIFEST
    return ct


def _hash(algorithm: str, data: bytes) -> str:
    try:
        h = hashlib.new(algorithm)
    except ValueError as exc:
        raise InvalidArgument(f"unsupported digest algorithm: {algorithm}") from exc
    h.update(data)
    return f"{algorithm}:{h.hexdigest()}"


def _verify(digest: str, data: bytes) -> None:
    algorithm = digest.split(":", 1)[0]
    if _hash(algorithm, data) != digest:
        raise DataCorrupted(f"manifest verification failed for digest {digest}")


def _is_digest(reference: str) -> bool:
    return ":" in reference


class ManifestOps(RepositoryCore):
    """The manifest and tag operations of a :class:`~dockwright.distribution.client.Repository`."""

    async def _get_manifest(self, ep: Endpoint, reference: str) -> tuple[bytes, str, str]:
        """GET a manifest: ``(body, Content-Type, Docker-Content-Digest)``."""
        url = self._url(ep, f"manifests/{reference}")
        resp = await self._send(ep, "GET", url, headers={"Accept": ", ".join(MANIFEST_ACCEPT)})
        if not 200 <= resp.status < 300:
            raise await self._error(resp, "GET", url)
        try:
            body, more = await read_limited(resp, MAX_MANIFEST_SIZE)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error("GET", url, exc) from exc
        finally:
            resp.release()
        if more:
            raise DataCorrupted(f"manifest {reference} is larger than the {MAX_MANIFEST_SIZE} bytes allowed")
        return body, resp.headers.get("Content-Type", ""), resp.headers.get("Docker-Content-Digest", "")

    def _check(self, reference: str, body: bytes, content_type: str, header_digest: str) -> Descriptor:
        mt = manifest_media_type(content_type, body)
        if mt in _SCHEMA1:
            ref = self.ref.with_digest(reference) if _is_digest(reference) else self.ref.with_tag(reference)
            raise schema1_error(ref)
        if _is_digest(reference):
            _verify(reference, body)
            digest = reference
        else:
            digest = _hash("sha256", body)
            if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
                raise DataCorrupted(f"manifest verification failed for digest {header_digest}")
        return Descriptor(media_type=mt, digest=digest, size=len(body))

    async def _resolve_on(self, ep: Endpoint, reference: str) -> tuple[Descriptor, bytes]:
        if not _is_digest(reference):
            url = self._url(ep, f"manifests/{reference}")
            resp = await self._send(ep, "HEAD", url, headers={"Accept": ", ".join(MANIFEST_ACCEPT)})
            status, digest = resp.status, resp.headers.get("Docker-Content-Digest", "")
            resp.release()
            if 200 <= status < 300 and digest and _is_digest(digest):
                body, ctype, _ = await self._get_manifest(ep, digest)
                mt = manifest_media_type(ctype, body)
                if mt in _SCHEMA1:
                    raise schema1_error(self.ref.with_tag(reference))
                _verify(digest, body)
                return Descriptor(media_type=mt, digest=digest, size=len(body)), body
            # no digest from HEAD, or an error: GET by tag (an error answer then carries its details)
        body, ctype, header_digest = await self._get_manifest(ep, reference)
        return self._check(reference, body, ctype, header_digest), body

    async def resolve(self, reference: str) -> tuple[Descriptor, bytes]:
        """The manifest (or index) a tag or digest names: its descriptor and raw bytes, digest verified.

        For a tag: HEAD for the digest then GET by digest (dockerd's traffic), or GET by tag when HEAD gives no
        digest. Schema 1 manifests are refused with moby's message (InvalidArgument).
        """
        return await self._run(lambda ep: self._resolve_on(ep, reference))

    async def fetch_manifest(self, digest: str) -> bytes:
        """The manifest with this digest, verified."""
        async def op(ep: Endpoint) -> bytes:
            body, _, _ = await self._get_manifest(ep, digest)
            _verify(digest, body)
            return body
        return await self._run(op)

    async def get_manifest_descriptor(self, reference: str) -> Descriptor:
        """The descriptor of what a tag or digest names (``GET /distribution/{name}/json``)."""
        desc, _ = await self.resolve(reference)
        return desc

    async def put_manifest(self, reference: str, media_type: str, raw: bytes) -> str:
        """PUT a manifest under a tag or digest; returns its digest (sha256 of ``raw``)."""
        async def op(ep: Endpoint) -> str:
            url = self._url(ep, f"manifests/{reference}")
            resp = await self._send(ep, "PUT", url, headers={"Content-Type": media_type}, data=raw)
            if not 200 <= resp.status < 300:
                raise await self._error(resp, "PUT", url)
            resp.release()
            return _hash("sha256", raw)
        return await self._run(op)

    async def list_tags(self, *, page_size: int | None = None) -> list[str]:
        """All tags (``/tags/list``, following ``Link: <…>; rel="next"``; ``page_size`` asks ``?n=``)."""
        async def op(ep: Endpoint) -> list[str]:
            url = self._url(ep, "tags/list")
            if page_size:
                url = with_query(url, n=str(page_size))
            tags: list[str] = []
            for _ in range(10000):
                resp = await self._send(ep, "GET", url)
                if not 200 <= resp.status < 300:
                    raise await self._error(resp, "GET", url)
                try:
                    body, _ = await read_limited(resp, 64 << 20)
                finally:
                    resp.release()
                try:
                    data = json.loads(body)
                except ValueError as exc:
                    raise SystemError_(f"invalid tags list from {url}: {exc}") from exc
                if isinstance(data, dict):
                    tags.extend(t for t in (data.get("tags") or []) if isinstance(t, str))
                link = resp.headers.get("Link", "")
                if not link:
                    return tags
                target = link.split(";", 1)[0].strip().strip("<>")
                url = join_location(url, target)
            return tags
        return await self._run(op)
