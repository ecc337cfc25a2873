"""Layer media types: the compression each names, the OCI type for each compression."""

from __future__ import annotations

import pytest

from dockwright.errors import InvalidArgument
from dockwright.layers import mediatypes as lmt
from dockwright.layers.compression import Compression
from dockwright.layers.mediatypes import compression_from_media_type, oci_layer_media_type


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        ("application/vnd.oci.image.layer.v1.tar", Compression.NONE),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Compression.ZSTD),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.diff.tar", Compression.NONE),
        ("application/vnd.oci.image.layer.v1.tar+gzip; charset=binary", Compression.GZIP),
    ],
)
def test_compression_from_media_type(media_type: str, kind: Compression) -> None:
    assert compression_from_media_type(media_type) is kind


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.oci.image.manifest.v1+json",
        "application/octet-stream",
        "",
    ],
)
def test_unknown_media_type(media_type: str) -> None:
    with pytest.raises(InvalidArgument):
        compression_from_media_type(media_type)


def test_oci_layer_media_type() -> None:
    for kind in (Compression.NONE, Compression.GZIP, Compression.ZSTD):
        mt = oci_layer_media_type(kind)
        assert mt == "application/vnd.oci.image.layer.v1.tar" + lmt.MEDIA_TYPE_SUFFIX[kind]
        assert compression_from_media_type(mt) is kind
    for kind in (Compression.BZIP2, Compression.XZ):
        with pytest.raises(InvalidArgument):
            oci_layer_media_type(kind)
