"""``docker save``: stream images as one tar that Docker 25+, Docker ≤ 24 and OCI tools all load.

This module owns the layout of the archive we write and streams it; it knows no store, names database or HTTP.
The caller gives :class:`SaveImage` records (raw config and manifest bytes, the layer blobs as stored) and an
``open_blob(digest)`` that streams a stored blob.

Layout (Docker 25+ = an OCI image layout plus Docker's ``manifest.json``), in this order::

    oci-layout                  {"imageLayoutVersion": "1.0.0"}              (bytes as dockerd 25+ writes them)
    index.json                  OCI index: one manifest descriptor per (image, name)
    manifest.json               [{"Config","RepoTags","Layers"[,"Parent"]}], paths "blobs/sha256/<hex>", + "\\n"
    repositories                {"<familiar repo>": {"<tag>": "<top layer DiffID hex>"}} + "\\n" (only if tagged)
    blobs/  blobs/sha256/       directories
    blobs/sha256/<hex>          config, manifest and layer blobs, each exactly once, in image order

Decisions, against what dockerd 25–28 (classic store) writes:

* **Layers are the stored compressed blobs** (gzip, or zstd when stored that way), named by their own digest,
  so the stored manifests stay valid and a load needs no recompression. dockerd's classic store writes
  uncompressed tars named by DiffID with a generated manifest; the containerd store writes compressed blobs as
  we do. Loaders of every generation decompress layer files (``DecompressStream``), and OCI tools read the
  manifests. (zstd layers need a loader that knows zstd: dockerd ≥ 23, containerd, skopeo.)
* **Docker schema2 manifests are written as the equivalent OCI manifest** (same config and layer blobs and
  sizes, OCI media types: ``…rootfs.diff.tar.gzip`` → ``…layer.v1.tar+gzip``, the config
  ``…config.v1+json``), and ``index.json`` points at that: OCI tools (skopeo, umoci) ignore index entries of
  Docker media types, and dockerd 25+ always writes OCI manifests too. An OCI manifest is written unchanged.
  (Loading such an archive back gives the OCI manifest, so the image keeps its ID but its manifest digest
  changes — as it does through dockerd.)
* ``index.json`` has one entry per name with ``io.containerd.image.name`` (full name) and
  ``org.opencontainers.image.ref.name`` (the tag); an image saved without a name gets one entry without
  annotations — and **every** untagged image gets one (dockerd keeps only the first, moby#51389). An entry
  carries ``platform`` only when :attr:`SaveImage.platform` is set (dockerd writes none).
* ``manifest.json`` has no ``LayerSources``: its only use is foreign (Windows) layers. ``Parent`` is written
  when the parent image is saved too, as dockerd does.
* No legacy v1 JSON blobs (nothing reads them) and no per-layer directories or symlinks.
* The small JSON files come **first**: a streaming reader then knows what every blob is before it arrives.
  Loaders that extract first (dockerd, containerd, skopeo, umoci) do not care about order.
* Tar headers: see :mod:`dockwright.tar.writer`. Config and layer blobs carry the image's ``created`` time (as dockerd),
  everything else the Unix epoch; files are 0644, directories 0755.

Memory stays flat: headers are made from the sizes known up front and each blob body is passed through
chunk by chunk from ``open_blob``; a blob that yields a different number of bytes than its recorded size
raises :class:`~dockwright.errors.DataCorrupted` (the stream is then unusable; the caller ends the response).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .. import reference as refs
from ..errors import DataCorrupted, InvalidArgument
from ..layers import mediatypes as lmt
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.digest import hex_of, sha256_digest
from ..oci.gojson import go_dumps, parse_rfc3339
from ..oci.platform import Platform
from ..tar.writer import TarWriter

__all__ = ["SaveLayer", "SaveImage", "write_save", "OCI_LAYOUT_BYTES", "ANNOTATION_IMAGE_NAME", "ANNOTATION_REF_NAME"]

OCI_LAYOUT_BYTES = b'{"imageLayoutVersion": "1.0.0"}'
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class SaveLayer:
    """A layer as stored: the (compressed) blob written into the archive, and its DiffID."""

    digest: str
    size: int
    media_type: str
    diff_id: str


@dataclass(frozen=True)
class SaveImage:
    """One image to save.

    ``repo_tags`` are familiar ``name:tag`` strings (manifest.json, repositories); ``full_names`` the same
    names in full form (index.json annotations). Either may be left empty and is then derived from the other;
    both empty means the image was asked for by ID. ``parent`` is the parent image ID, written to
    manifest.json only when that image is in the same save.
    """

    config_digest: str
    config_raw: bytes
    manifest_digest: str
    manifest_raw: bytes
    manifest_media_type: str
    layers: list[SaveLayer]
    repo_tags: list[str] = field(default_factory=list)
    full_names: list[str] = field(default_factory=list)
    platform: Platform | None = None
    parent: str = ""


def _names(img: SaveImage) -> tuple[list[str], list[refs.Reference]]:
    """(familiar RepoTags, full tagged references) of an image."""
    sources = img.full_names or img.repo_tags
    parsed: list[refs.Reference] = []
    for s in sources:
        r = refs.parse_normalized_named(s)
        if not r.tag:
            raise InvalidArgument(f"cannot save {s!r}: a tag is required")
        parsed.append(refs.Reference(r.domain, r.path, r.tag))
    familiar = list(img.repo_tags) if img.repo_tags else [r.familiar() for r in parsed]
    return familiar, parsed


def _created(config_raw: bytes) -> float:
    try:
        data = json.loads(config_raw)
    except ValueError:
        return 0
    c = data.get("created") if isinstance(data, dict) else None
    t = parse_rfc3339(c) if isinstance(c, str) else None
    return t if t is not None and t > 0 else 0


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + hex_of(digest)


_OCI_LAYER_TYPES = {
    lmt.DOCKER_LAYER: lmt.OCI_LAYER,
    lmt.DOCKER_LAYER_GZIP: lmt.OCI_LAYER_GZIP,
    lmt.DOCKER_LAYER_FOREIGN_GZIP: lmt.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar": lmt.OCI_LAYER_NONDISTRIBUTABLE,
}


def _archive_manifest(img: SaveImage) -> tuple[str, bytes, str]:
    """(digest, bytes, media type) of the manifest index.json points at: the stored one if it is OCI, else
    its OCI equivalent (see the module docstring)."""
    if img.manifest_media_type != mt.DOCKER_MANIFEST:
        return img.manifest_digest, img.manifest_raw, img.manifest_media_type
    try:
        doc = json.loads(img.manifest_raw)
        config = Descriptor.from_json(doc["config"])
        layers = [Descriptor.from_json(x) for x in doc.get("layers") or []]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataCorrupted(f"invalid manifest {img.manifest_digest}: {exc}") from exc

    def conv(d: Descriptor, media_type: str) -> dict[str, object]:
        return Descriptor(media_type, d.digest, d.size, annotations=d.annotations, platform=d.platform,
                          urls=d.urls).to_json()

    out: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": conv(config, mt.OCI_CONFIG),
        "layers": [conv(d, _OCI_LAYER_TYPES.get(d.media_type, d.media_type)) for d in layers],
    }
    if doc.get("annotations"):
        out["annotations"] = doc["annotations"]
    raw = go_dumps(out)
    return sha256_digest(raw), raw, mt.OCI_MANIFEST


def _metadata(images: list[SaveImage]) -> tuple[bytes, bytes, bytes | None]:
    """(index.json, manifest.json, repositories or None)."""
    index_entries: list[dict[str, object]] = []
    seen_plain: set[str] = set()
    manifest_items: list[dict[str, object]] = []
    repositories: dict[str, dict[str, str]] = {}
    ids = {img.config_digest for img in images}
    for img in images:
        familiar, full = _names(img)
        m_digest, m_raw, m_type = _archive_manifest(img)
        base = Descriptor(m_type, m_digest, len(m_raw), platform=img.platform)
        if full:
            for r in full:
                d = Descriptor(base.media_type, base.digest, base.size, platform=base.platform,
                               annotations={ANNOTATION_IMAGE_NAME: str(r), ANNOTATION_REF_NAME: r.tag or ""})
                index_entries.append(d.to_json())
        elif m_digest not in seen_plain:
            seen_plain.add(m_digest)
            index_entries.append(base.to_json())
        item: dict[str, object] = {
            "Config": _blob_path(img.config_digest),
            "RepoTags": familiar or None,
            "Layers": [_blob_path(lay.digest) for lay in img.layers],
        }
        if img.parent and img.parent in ids and img.parent != img.config_digest:
            item["Parent"] = img.parent
        manifest_items.append(item)
        if img.layers:
            top = hex_of(img.layers[-1].diff_id)
            for r in full:
                repositories.setdefault(r.familiar_name, {})[r.tag or ""] = top
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}
    repos = None
    if repositories:
        repos = go_dumps({k: dict(sorted(v.items())) for k, v in sorted(repositories.items())}) + b"\n"
    return go_dumps(index), go_dumps(manifest_items) + b"\n", repos


async def write_save(images: list[SaveImage], open_blob: Callable[[str], AsyncIterator[bytes]], *,
                     docker: bool = True) -> AsyncIterator[bytes]:
    """Yield the archive of ``images`` chunk by chunk (see the module docstring for the layout).

    Config and manifest bytes come from the records; layer blobs are streamed with ``open_blob(digest)``.
    A blob shared by several images (or listed twice) is written once. Without ``docker`` it is an OCI image
    layout only: no ``manifest.json`` or ``repositories`` (BuildKit's ``oci`` exporter).
    """
    tw = TarWriter()
    index_json, manifest_json, repositories = _metadata(images)

    def small(name: str, data: bytes, mtime: float = 0) -> bytes:
        return tw.header_file(name, len(data), mtime=mtime) + data + tw.padding(len(data))

    yield small("oci-layout", OCI_LAYOUT_BYTES)
    yield small("index.json", index_json)
    if docker:
        yield small("manifest.json", manifest_json)
        if repositories is not None:
            yield small("repositories", repositories)
    yield tw.header_dir("blobs") + tw.header_dir("blobs/sha256")

    written: set[str] = set()
    for img in images:
        created = _created(img.config_raw)
        if img.config_digest not in written:
            written.add(img.config_digest)
            yield small(_blob_path(img.config_digest), img.config_raw, created)
        m_digest, m_raw, _ = _archive_manifest(img)
        if m_digest not in written:
            written.add(m_digest)
            yield small(_blob_path(m_digest), m_raw)
        for lay in img.layers:
            if lay.digest in written:
                continue
            written.add(lay.digest)
            yield tw.header_file(_blob_path(lay.digest), lay.size, mtime=created)
            sent = 0
            body = open_blob(lay.digest)
            try:
                async for chunk in body:
                    if not chunk:
                        continue
                    sent += len(chunk)
                    if sent > lay.size:
                        raise DataCorrupted(f"blob {lay.digest} is larger than its recorded size {lay.size}")
                    yield chunk
            finally:
                # release the blob's file at once when the consumer stops early (a client that went away)
                aclose = getattr(body, "aclose", None)
                if aclose is not None:
                    await aclose()
            if sent != lay.size:
                raise DataCorrupted(f"blob {lay.digest} ended after {sent} of {lay.size} bytes")
            pad = tw.padding(lay.size)
            if pad:
                yield pad
    yield tw.end()
