"""Unit tests of oci/config.py: container.Config in Go's field order, ImageConfig's accessors and the config
``docker import`` writes."""

from __future__ import annotations

import json

import pytest

from dockwright.errors import DataCorrupted
from dockwright.oci.config import CONTAINER_CONFIG_FIELDS, ImageConfig, container_config, import_config_bytes
from dockwright.oci.digest import sha256_digest

# moby api/types/container.Config, in struct order; omitempty: ExposedPorts, Healthcheck, ArgsEscaped,
# NetworkDisabled, MacAddress, StopSignal, StopTimeout, Shell
GO_ORDER = ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
            "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
            "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell"]
OMITEMPTY = {"ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal",
             "StopTimeout", "Shell"}


def test_field_table_is_gos() -> None:
    assert [f[0] for f in CONTAINER_CONFIG_FIELDS] == GO_ORDER
    assert {f[0] for f in CONTAINER_CONFIG_FIELDS if f[2]} == OMITEMPTY


def test_empty_config_has_every_non_omitempty_field_with_its_zero_value() -> None:
    out = container_config(None)
    assert list(out) == [k for k in GO_ORDER if k not in OMITEMPTY]
    assert out["Hostname"] == "" and out["AttachStdin"] is False and out["Env"] is None and out["Labels"] is None
    assert container_config({}) == out


def test_set_fields_keep_go_order_and_omitempty_ones_appear_when_set() -> None:
    out = container_config({"Shell": ["/bin/sh", "-c"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}},
                            "StopSignal": "SIGTERM", "ArgsEscaped": True})
    assert list(out) == [k for k in GO_ORDER if k not in OMITEMPTY or k in
                         {"Shell", "ExposedPorts", "StopSignal", "ArgsEscaped"}]
    assert out["Cmd"] == ["sh"] and out["Shell"] == ["/bin/sh", "-c"]


@pytest.mark.parametrize("empty", [None, "", False, [], {}])
def test_omitempty_fields_left_out_when_empty(empty: object) -> None:
    out = container_config({k: empty for k in OMITEMPTY})
    assert not set(out) & OMITEMPTY


def test_map_fields_are_written_with_sorted_keys() -> None:
    out = container_config({"Labels": {"z": "1", "a": "2"}, "ExposedPorts": {"8080/tcp": {}, "443/tcp": {}},
                            "Volumes": {"/b": {}, "/a": {}}})
    assert list(out["Labels"]) == ["a", "z"]
    assert list(out["ExposedPorts"]) == ["443/tcp", "8080/tcp"]
    assert list(out["Volumes"]) == ["/a", "/b"]


def test_unknown_keys_are_kept_after_the_known_ones() -> None:
    out = container_config({"Zzz": 1, "Hostname": "h"})
    assert list(out)[-1] == "Zzz" and out["Zzz"] == 1 and out["Hostname"] == "h"


def test_image_config_accessors() -> None:
    doc = {"architecture": "arm", "variant": "v7", "os": "linux", "created": "2017-07-14T02:40:00Z",
           "parent": "sha256:p", "config": {"Labels": {"a": "b"}, "Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": ["sha256:1", "sha256:2"]},
           "history": [{"created_by": "x"}]}
    raw = json.dumps(doc).encode()
    ic = ImageConfig(raw)
    assert ic.raw == raw and sha256_digest(ic.raw) == sha256_digest(raw)
    assert ic.diff_ids == ["sha256:1", "sha256:2"]
    assert ic.history == [{"created_by": "x"}]
    assert ic.config == {"Labels": {"a": "b"}, "Cmd": ["sh"]}
    assert ic.labels == {"a": "b"}
    assert (ic.os, ic.architecture, ic.variant, ic.parent) == ("linux", "arm", "v7", "sha256:p")
    assert ic.created_raw == "2017-07-14T02:40:00Z" and ic.created == 1_500_000_000.0
    ic.config["Cmd"] = ["changed"]  # a copy
    assert ic.data["config"]["Cmd"] == ["sh"]


def test_image_config_defaults_for_a_bare_config() -> None:
    ic = ImageConfig(b'{"config": null, "rootfs": null, "created": ""}')
    assert (ic.diff_ids, ic.history, ic.config, ic.labels) == ([], [], {}, None)
    assert (ic.created_raw, ic.created, ic.os, ic.architecture, ic.variant, ic.parent) == (None, None, "", "", "", "")
    assert ImageConfig(b'{"config": {"Labels": {}}}').labels is None


@pytest.mark.parametrize("raw,message", [
    (b"{", "invalid image config: "),
    (b"[1]", "invalid image config: not a JSON object"),
    (b"null", "invalid image config: not a JSON object"),
])
def test_image_config_refuses_what_is_not_an_object(raw: bytes, message: str) -> None:
    with pytest.raises(DataCorrupted) as exc:
        ImageConfig(raw)
    assert str(exc.value).startswith(message)


def _import(**kw: object) -> bytes:
    args: dict[str, object] = dict(diff_ids=["sha256:" + "a" * 64], os="linux", architecture="amd64", variant="",
                                   comment="", created="2020-01-01T00:00:00Z", docker_version="28.5.2",
                                   config={"Cmd": ["sh"]})
    args.update(kw)
    return import_config_bytes(**args)  # type: ignore[arg-type]


def test_import_config_is_sorted_compact_go_json() -> None:
    raw = _import()
    doc = json.loads(raw)
    assert list(doc) == ["architecture", "config", "container_config", "created", "docker_version", "history", "os",
                         "rootfs"]
    assert b", " not in raw and b": " not in raw
    assert doc["history"] == [{"created": "2020-01-01T00:00:00Z"}]
    assert doc["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
    assert doc["config"]["Cmd"] == ["sh"] and list(doc["config"]) == list(container_config({"Cmd": ["sh"]}))
    assert doc["container_config"] == container_config({})


def test_import_config_with_comment_and_variant() -> None:
    doc = json.loads(_import(comment="from <tar>", variant="v7", architecture="arm"))
    assert doc["comment"] == "from <tar>" and doc["variant"] == "v7"
    assert doc["history"] == [{"created": "2020-01-01T00:00:00Z", "comment": "from <tar>"}]
    assert list(doc) == sorted(doc)
    assert b"\\u003ctar\\u003e" in _import(comment="from <tar>")  # json.Marshal escapes HTML


def test_import_config_is_deterministic() -> None:
    assert sha256_digest(_import()) == sha256_digest(_import())
    assert _import() != _import(created="2020-01-01T00:00:01Z")
