"""Unit tests of the pure renderers of api/images.py: ``GET /images/json`` entries and ``GET /images/{name}/json``
at API 1.41, 1.44 and 1.51, field by field against the specs (/work/shared/spec) and IMPLEMENTER-NOTES."""

from __future__ import annotations

from typing import Any

import pytest

from dockwright.api.image_json import inspect_json, summary_json
from dockwright.engine.types import Image, ImageSummary
from dockwright.oci.config import container_config
from dockwright.oci.descriptor import Descriptor

from specdefs import properties

ID = "sha256:" + "1" * 64
DESC = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + "2" * 64, "size": 10}


def summary(**kw: Any) -> ImageSummary:
    fields: dict[str, Any] = dict(id=ID, parent_id="", repo_tags=["a:1"], repo_digests=["a@sha256:" + "2" * 64],
                                  created=1_500_000_000, size=4096, shared_size=1024, labels={"k": "v"},
                                  containers=2, descriptor=Descriptor.from_json(DESC))
    fields.update(kw)
    return ImageSummary(**fields)


# the engine's Image by the JSON names of GET /images/{name}/json
_FIELDS = {"Id": "id", "RepoTags": "repo_tags", "RepoDigests": "repo_digests", "Parent": "parent",
           "Comment": "comment", "Created": "created", "Container": "container",
           "ContainerConfig": "container_config", "DockerVersion": "docker_version", "Author": "author",
           "Config": "config", "Architecture": "architecture", "Variant": "variant", "Os": "os",
           "OsVersion": "os_version", "Size": "size"}


def inspect_data(**kw: Any) -> Image:
    d: dict[str, Any] = {
        "Id": ID, "RepoTags": ["a:1"], "RepoDigests": [], "Parent": "", "Comment": "", "Created":
        "2017-07-14T02:40:00Z", "Container": "", "ContainerConfig": None, "DockerVersion": "", "Author": "",
        "Config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}, "Architecture": "amd64", "Variant": None, "Os": "linux",
        "OsVersion": None, "Size": 4096}
    d.update(kw)
    return Image(**{_FIELDS[k]: v for k, v in d.items()}, layers=["sha256:" + "3" * 64], last_tag_time=None,
                 descriptor=Descriptor.from_json(DESC), graph_driver=None)


# ---- GET /images/json --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,version", [("1.41", (1, 41)), ("1.44", (1, 44))])
def test_summary_has_exactly_the_specs_fields(spec: str, version: tuple[int, int]) -> None:
    assert set(summary_json(summary(), version)) == set(properties(spec, "ImageSummary"))


def test_summary_at_1_51_has_the_required_fields_and_nothing_unknown() -> None:
    out = summary_json(summary(), (1, 51))
    spec = properties("1.51", "ImageSummary")
    assert set(out) <= set(spec)
    assert set(spec) - set(out) == {"Manifests", "Descriptor"}  # both only with manifests=1 / omitempty


def test_summary_values_per_version() -> None:
    s = summary()
    old = summary_json(s, (1, 41))
    assert (old["Containers"], old["SharedSize"], old["VirtualSize"], old["Size"]) == (-1, -1, 4096, 4096)
    assert summary_json(s, (1, 42))["SharedSize"] == 1024  # computed only from 1.42
    assert "VirtualSize" in summary_json(s, (1, 43)) and "VirtualSize" not in summary_json(s, (1, 44))
    assert summary_json(s, (1, 50))["Containers"] == -1
    new = summary_json(s, (1, 51))
    assert (new["Containers"], new["Id"], new["Labels"], new["Created"]) == (2, ID, {"k": "v"}, 1_500_000_000)
    assert list(new) == sorted(new)  # Go writes the struct's fields in this (alphabetical) order


def test_summary_untagged_placeholders_until_1_43() -> None:
    s = summary(repo_tags=[], repo_digests=[])
    old = summary_json(s, (1, 42))
    assert (old["RepoTags"], old["RepoDigests"]) == (["<none>:<none>"], ["<none>@<none>"])
    new = summary_json(s, (1, 43))
    assert (new["RepoTags"], new["RepoDigests"]) == ([], [])
    only_digest = summary_json(summary(repo_tags=[]), (1, 41))
    assert only_digest["RepoTags"] == []  # a digest is enough: no placeholder


# ---- GET /images/{name}/json -------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,version", [("1.41", (1, 41)), ("1.44", (1, 44)), ("1.51", (1, 51))])
def test_inspect_fields_are_the_specs(spec: str, version: tuple[int, int]) -> None:
    out = inspect_json(inspect_data(Variant="v7", OsVersion="10"), version)
    spec_keys = properties(spec, "ImageInspect")
    assert set(out) <= set(spec_keys)
    assert set(spec_keys) - set(out) <= {"Manifests"}  # only with manifests=1 (1.48+)
    assert set(out["Config"]) <= set(properties(spec, "ContainerConfig"))


def test_inspect_version_dependent_fields() -> None:
    d = inspect_data(ContainerConfig={"Cmd": ["x"]}, Container="c0ffee")
    at41, at44, at45, at48, at51 = (inspect_json(d, v) for v in ((1, 41), (1, 44), (1, 45), (1, 48), (1, 51)))
    assert at41["VirtualSize"] == 4096 and "VirtualSize" not in at44
    assert at44["Container"] == "c0ffee" and at44["ContainerConfig"] == container_config({"Cmd": ["x"]})
    assert "Container" not in at45 and "ContainerConfig" not in at45
    assert "Descriptor" not in inspect_json(d, (1, 47)) and at48["Descriptor"] == DESC == at51["Descriptor"]
    assert list(at41)[:5] == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment"]


def test_inspect_created_zero_time_only_below_1_44() -> None:
    d = inspect_data(Created=None)
    assert inspect_json(d, (1, 43))["Created"] == "0001-01-01T00:00:00Z"
    assert "Created" not in inspect_json(d, (1, 44))
    assert inspect_json(inspect_data(), (1, 51))["Created"] == "2017-07-14T02:40:00Z"


def test_inspect_variant_and_os_version_are_omitempty() -> None:
    out = inspect_json(inspect_data(), (1, 51))
    assert "Variant" not in out and "OsVersion" not in out
    out = inspect_json(inspect_data(Variant="v7", OsVersion="10.0"), (1, 51))
    assert (out["Variant"], out["OsVersion"]) == ("v7", "10.0")
    assert list(out).index("Variant") == list(out).index("Architecture") + 1


def test_inspect_config_below_1_50_is_the_whole_container_config() -> None:
    cfg = inspect_json(inspect_data(), (1, 49))["Config"]
    assert cfg == container_config({"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    assert cfg["Hostname"] == "" and cfg["AttachStdin"] is False and cfg["Image"] == ""


def test_inspect_config_from_1_50_drops_container_only_keys_and_keeps_the_always_ones() -> None:
    # IMPLEMENTER-NOTES: in v1.51 Config always includes Cmd, Entrypoint, Env, Labels, OnBuild, Volumes (null if
    # unset), User and WorkingDir ("" if unset)
    cfg = inspect_json(inspect_data(Config={"Cmd": ["sh"], "StopTimeout": 5, "MacAddress": "m",
                                            "StopSignal": "SIGINT"}), (1, 51))["Config"]
    for key in ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
                "StdinOnce", "Image", "NetworkDisabled", "MacAddress", "StopTimeout"):
        assert key not in cfg, key
    assert cfg["StopSignal"] == "SIGINT" and cfg["Cmd"] == ["sh"]
    for key in ("Entrypoint", "Env", "Labels", "OnBuild", "Volumes"):
        assert cfg[key] is None, key
    assert (cfg["User"], cfg["WorkingDir"]) == ("", "")
    empty = inspect_json(inspect_data(Config=None), (1, 51))["Config"]
    assert set(empty) == {"User", "Env", "Cmd", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels"}
