"""An image manifest made for a config and its stored layers, as dockerd writes one: a Docker schema2 manifest,
or the OCI one (OCI media types) when asked or when a layer has no Docker media type (uncompressed, zstd), with
Go's ``json.MarshalIndent(m, "", "   ")`` spacing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from . import mediatypes as mt

__all__ = ["ManifestLayer", "image_manifest", "OCI_LAYER_TYPES"]

#: the OCI media type of a Docker layer media type
OCI_LAYER_TYPES = {mt.DOCKER_LAYER: mt.OCI_LAYER_GZIP, "application/vnd.docker.image.rootfs.diff.tar": mt.OCI_LAYER}


class ManifestLayer(Protocol):
    """A stored layer blob, as a manifest lists it."""

    @property
    def digest(self) -> str:
        """The blob's digest."""

    @property
    def size(self) -> int:
        """The blob's size."""

    @property
    def media_type(self) -> str:
        """The blob's media type."""


def image_manifest(config_raw: bytes, config_digest: str, layers: Sequence[ManifestLayer], *,
                   media_type: str = mt.DOCKER_MANIFEST) -> tuple[bytes, str]:
    """(manifest bytes, its media type) for ``config_raw`` (digest ``config_digest``) and ``layers``."""
    if any(lay.media_type != mt.DOCKER_LAYER for lay in layers):
        media_type = mt.OCI_MANIFEST  # uncompressed or zstd layers: an OCI manifest
    oci = media_type == mt.OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG, "size": len(config_raw),
                   "digest": config_digest},
        "layers": [{"mediaType": OCI_LAYER_TYPES.get(lay.media_type, lay.media_type) if oci else lay.media_type,
                    "size": lay.size, "digest": lay.digest} for lay in layers],
    }
    return json.dumps(manifest, indent=3).encode(), media_type
