"""Unit tests of oci/descriptor.py: the descriptor's JSON names, optional fields and equality."""

from __future__ import annotations

import json

import pytest

from dockwright.oci.descriptor import Descriptor
from dockwright.oci.mediatypes import OCI_MANIFEST
from dockwright.oci.platform import Platform

D = "sha256:" + "ab" * 32


def test_minimal_descriptor_has_only_the_required_fields_in_go_order() -> None:
    d = Descriptor(OCI_MANIFEST, D, 528)
    assert list(d.to_json().items()) == [("mediaType", OCI_MANIFEST), ("digest", D), ("size", 528)]


def test_every_optional_field_and_its_json_name() -> None:
    d = Descriptor(OCI_MANIFEST, D, 1, annotations={"k": "v"}, platform=Platform("linux", "arm", "v7"),
                   urls=["https://x/y"], artifact_type="application/x")
    j = d.to_json()
    assert list(j) == ["mediaType", "digest", "size", "urls", "annotations", "platform", "artifactType"]
    assert j["platform"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert j["annotations"] == {"k": "v"} and j["urls"] == ["https://x/y"] and j["artifactType"] == "application/x"


def test_empty_optionals_are_omitted() -> None:
    j = Descriptor(OCI_MANIFEST, D, 1, annotations={}, urls=[], artifact_type="").to_json()
    assert set(j) == {"mediaType", "digest", "size"}


def test_round_trip_through_json() -> None:
    d = Descriptor(OCI_MANIFEST, D, 7, annotations={"org.opencontainers.image.ref.name": "1"},
                   platform=Platform("linux", "amd64", os_version="10", os_features=("sse4",)),
                   urls=["u"], artifact_type="t")
    back = Descriptor.from_json(json.loads(json.dumps(d.to_json())))
    assert back == d
    assert (back.annotations, back.platform, back.urls, back.artifact_type) == (
        d.annotations, d.platform, d.urls, d.artifact_type)


def test_from_json_defaults_and_requires_a_digest() -> None:
    d = Descriptor.from_json({"digest": D, "size": "12", "platform": "not an object", "annotations": {}})
    assert (d.media_type, d.size, d.platform, d.annotations) == ("", 12, None, None)
    with pytest.raises(KeyError):
        Descriptor.from_json({"mediaType": OCI_MANIFEST, "size": 1})


def test_equality_is_media_type_digest_and_size_only() -> None:
    a = Descriptor(OCI_MANIFEST, D, 1, annotations={"a": "1"})
    b = Descriptor(OCI_MANIFEST, D, 1, platform=Platform("linux", "amd64"))
    assert a == b and hash(a) == hash(b)
    assert a != Descriptor(OCI_MANIFEST, D, 2)
    assert len({a, b}) == 1
