"""Media types of the OCI image spec and of Docker's schema2."""

from __future__ import annotations

__all__ = [
    "OCI_INDEX", "OCI_MANIFEST", "OCI_CONFIG", "OCI_LAYER", "OCI_LAYER_GZIP", "OCI_LAYER_ZSTD",
    "DOCKER_MANIFEST_LIST", "DOCKER_MANIFEST", "DOCKER_CONFIG", "DOCKER_LAYER", "DOCKER_LAYER_FOREIGN",
    "DOCKER_MANIFEST_V1", "DOCKER_MANIFEST_V1_SIGNED",
    "INDEX_TYPES", "MANIFEST_TYPES", "CONFIG_TYPES", "LAYER_TYPES", "is_index", "is_manifest", "is_layer",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset({OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_FOREIGN,
                         "application/vnd.docker.image.rootfs.diff.tar"})


def is_index(mt: str) -> bool:
    """Whether ``mt`` is an image index (OCI index or Docker manifest list)."""
    return mt in INDEX_TYPES


def is_manifest(mt: str) -> bool:
    """Whether ``mt`` is a single-platform image manifest (OCI or Docker schema2; not schema1)."""
    return mt in MANIFEST_TYPES


def is_layer(mt: str) -> bool:
    """Whether ``mt`` is a layer blob (OCI or Docker; plain, gzip, zstd or foreign)."""
    return mt in LAYER_TYPES
