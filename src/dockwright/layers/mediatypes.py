"""Layer media types (OCI, nondistributable, Docker) and the compression each one names."""

from __future__ import annotations

from ..errors import InvalidArgument
from .compression import Compression

__all__ = [
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_LAYER_NONDISTRIBUTABLE",
    "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_FOREIGN_GZIP",
    "MEDIA_TYPE_SUFFIX",
    "compression_from_media_type",
    "oci_layer_media_type",
]

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = OCI_LAYER_NONDISTRIBUTABLE + "+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = OCI_LAYER_NONDISTRIBUTABLE + "+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

#: The suffix an OCI layer media type carries for each compression it can express.
MEDIA_TYPE_SUFFIX: dict[Compression, str] = {
    Compression.NONE: "",
    Compression.GZIP: "+gzip",
    Compression.ZSTD: "+zstd",
}

_MEDIA_TYPES: dict[str, Compression] = {
    OCI_LAYER: Compression.NONE,
    OCI_LAYER_GZIP: Compression.GZIP,
    OCI_LAYER_ZSTD: Compression.ZSTD,
    OCI_LAYER_NONDISTRIBUTABLE: Compression.NONE,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: Compression.GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: Compression.ZSTD,
    DOCKER_LAYER: Compression.NONE,
    DOCKER_LAYER_GZIP: Compression.GZIP,
    DOCKER_LAYER_FOREIGN_GZIP: Compression.GZIP,
}


def compression_from_media_type(media_type: str) -> Compression:
    """The compression of a layer with this media type (parameters after ``;`` are ignored).

    Raises :class:`~dockwright.errors.InvalidArgument` for anything that is not a known layer type.
    """
    base = media_type.split(";", 1)[0].strip().lower()
    try:
        return _MEDIA_TYPES[base]
    except KeyError:
        raise InvalidArgument(f"unsupported layer media type: {media_type!r}") from None


def oci_layer_media_type(kind: Compression) -> str:
    """The OCI layer media type for a layer compressed with ``kind`` (none, gzip or zstd)."""
    try:
        return OCI_LAYER + MEDIA_TYPE_SUFFIX[kind]
    except KeyError:
        raise InvalidArgument(f"no OCI layer media type for {kind.value} compression") from None
