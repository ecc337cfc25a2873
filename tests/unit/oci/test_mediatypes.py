"""Unit tests of oci/mediatypes.py: the media type strings and their classes."""

from __future__ import annotations

import pytest

from dockwright.oci import mediatypes as mt


def test_the_strings_are_the_specs() -> None:
    assert mt.OCI_INDEX == "application/vnd.oci.image.index.v1+json"
    assert mt.OCI_MANIFEST == "application/vnd.oci.image.manifest.v1+json"
    assert mt.OCI_CONFIG == "application/vnd.oci.image.config.v1+json"
    assert mt.OCI_LAYER_GZIP == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert mt.OCI_LAYER_ZSTD == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert mt.DOCKER_MANIFEST_LIST == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert mt.DOCKER_MANIFEST == "application/vnd.docker.distribution.manifest.v2+json"
    assert mt.DOCKER_CONFIG == "application/vnd.docker.container.image.v1+json"
    assert mt.DOCKER_LAYER == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert mt.DOCKER_LAYER_FOREIGN == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


@pytest.mark.parametrize("value,index,manifest,layer", [
    (mt.OCI_INDEX, True, False, False),
    (mt.DOCKER_MANIFEST_LIST, True, False, False),
    (mt.OCI_MANIFEST, False, True, False),
    (mt.DOCKER_MANIFEST, False, True, False),
    (mt.DOCKER_MANIFEST_V1, False, False, False),
    (mt.DOCKER_MANIFEST_V1_SIGNED, False, False, False),
    (mt.OCI_CONFIG, False, False, False),
    (mt.DOCKER_CONFIG, False, False, False),
    (mt.OCI_LAYER, False, False, True),
    (mt.OCI_LAYER_GZIP, False, False, True),
    (mt.OCI_LAYER_ZSTD, False, False, True),
    (mt.DOCKER_LAYER, False, False, True),
    (mt.DOCKER_LAYER_FOREIGN, False, False, True),
    ("application/vnd.docker.image.rootfs.diff.tar", False, False, True),
    ("", False, False, False),
    ("application/json", False, False, False),
    (mt.OCI_MANIFEST.upper(), False, False, False),  # media types compare exactly
])
def test_classes(value: str, index: bool, manifest: bool, layer: bool) -> None:
    assert (mt.is_index(value), mt.is_manifest(value), mt.is_layer(value)) == (index, manifest, layer)


def test_the_sets_do_not_overlap() -> None:
    sets = [mt.INDEX_TYPES, mt.MANIFEST_TYPES, mt.CONFIG_TYPES, mt.LAYER_TYPES]
    for i, a in enumerate(sets):
        for b in sets[i + 1:]:
            assert not a & b
    assert mt.CONFIG_TYPES == {mt.OCI_CONFIG, mt.DOCKER_CONFIG}
