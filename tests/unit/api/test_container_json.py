"""Unit tests of the pure renderers of api/containers.py: inspect's ``Config`` (container.Config), ``HostConfig``
per API version and ``Mounts`` (MountPoint), against the specs at 1.41, 1.44 and 1.51.
(Named ``_json`` because tests/e2e/test_containers.py holds the basename.)"""

from __future__ import annotations

from typing import Any

import pytest

from dockwright.api.container_json import config_json, host_config_json, mount_point_json

from specdefs import properties

CONFIG_ORDER = ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
                "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
                "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
                "StopTimeout", "Shell"]
OMITEMPTY = {"ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal",
             "StopTimeout", "Shell"}


# ---- Config ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["1.41", "1.44", "1.51"])
def test_config_keys_are_the_specs(spec: str) -> None:
    everything: dict[str, Any] = {k: "x" for k in CONFIG_ORDER}
    everything["Labels"] = {"a": "b"}
    assert list(config_json(everything)) == [k for k in properties(spec, "ContainerConfig")]
    assert set(config_json({})) == set(properties(spec, "ContainerConfig")) - OMITEMPTY


def test_config_zero_values() -> None:
    out = config_json({})
    assert list(out) == [k for k in CONFIG_ORDER if k not in OMITEMPTY]
    assert out["Labels"] == {}  # at least {}
    for key in ("Env", "Cmd", "Entrypoint", "Volumes", "OnBuild"):
        assert out[key] is None, key
    assert (out["Hostname"], out["AttachStdin"], out["Tty"]) == ("", False, False)
    assert config_json({"Env": [], "Cmd": [], "Labels": None})["Env"] is None


def test_config_omitempty_pointers_kept_when_set_even_if_zero() -> None:
    out = config_json({"StopTimeout": 0, "Healthcheck": {}, "Shell": [], "ArgsEscaped": False, "MacAddress": ""})
    assert out["StopTimeout"] == 0 and out["Healthcheck"] == {}  # pointers: left out only when unset
    assert "Shell" not in out and "ArgsEscaped" not in out and "MacAddress" not in out


def test_config_values_pass_through() -> None:
    cfg = {"Cmd": ["sh", "-c", "x"], "Env": ["A=1"], "Labels": {"a": "b"}, "ExposedPorts": {"80/tcp": {}},
           "Tty": True, "User": "1000", "Unknown": 1}
    out = config_json(cfg)
    assert out["Cmd"] == ["sh", "-c", "x"] and out["Labels"] == {"a": "b"} and out["Tty"] is True
    assert out["ExposedPorts"] == {"80/tcp": {}} and out["User"] == "1000"
    assert "Unknown" not in out


# ---- HostConfig --------------------------------------------------------------------------------------------------

def _hc(version: tuple[int, int], **kw: Any) -> dict[str, Any]:
    return host_config_json({"NetworkMode": "default", **kw}, version)


@pytest.mark.parametrize("spec,version", [("1.41", (1, 41)), ("1.44", (1, 44)), ("1.51", (1, 51))])
def test_host_config_keys_are_the_specs(spec: str, version: tuple[int, int]) -> None:
    keys = set(properties(spec, "HostConfig"))
    out = _hc(version)
    assert set(out) <= keys
    # missing only what Go's struct marks omitempty (and, from 1.42, KernelMemoryTCP: omitempty there too)
    omitted = {"Mounts", "StorageOpt", "Tmpfs", "Sysctls", "Init"} | (
        {"Annotations", "KernelMemoryTCP"} if version >= (1, 44) else set())
    assert keys - set(out) == omitted
    full = _hc(version, Mounts=[{"Type": "bind"}], StorageOpt={"size": "1G"}, Tmpfs={"/t": ""}, Sysctls={"a": "1"},
               Init=False, Annotations={"a": "b"}, KernelMemoryTCP=1)
    assert keys <= set(full)


def test_kernel_memory_always_up_to_1_41_only_when_set_from_1_42() -> None:
    old = _hc((1, 41))
    assert (old["KernelMemory"], old["KernelMemoryTCP"]) == (0, 0)
    assert "KernelMemory" not in _hc((1, 42)) and "KernelMemoryTCP" not in _hc((1, 51))
    assert _hc((1, 51), KernelMemory=1024)["KernelMemory"] == 1024
    assert "KernelMemory" not in host_config_json({}, None)  # no version: the current one


def test_host_config_create_time_defaults() -> None:
    out = _hc((1, 51))
    assert out["ShmSize"] == 67108864 and out["IpcMode"] == "private" and out["Runtime"] == "runc"
    assert out["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert out["RestartPolicy"] == {"Name": "", "MaximumRetryCount": 0}
    assert out["ConsoleSize"] == [0, 0] and out["OomKillDisable"] is False
    assert out["CgroupnsMode"] in ("private", "host")
    assert out["MaskedPaths"] and out["ReadonlyPaths"]
    priv = _hc((1, 51), Privileged=True)
    assert priv["MaskedPaths"] is None and priv["ReadonlyPaths"] is None


def test_host_config_order_and_values() -> None:
    out = _hc((1, 51), Binds=["/a:/b"], Memory=1 << 20, RestartPolicy={"Name": "always"}, Init=True,
              Tmpfs={"/t": ""})
    keys = list(out)
    assert keys[:6] == ["Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy"]
    assert keys[-3:] == ["MaskedPaths", "ReadonlyPaths", "Init"]
    assert out["Binds"] == ["/a:/b"] and out["Memory"] == 1 << 20 and out["Init"] is True
    assert out["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert out["Tmpfs"] == {"/t": ""}
    assert "Init" not in _hc((1, 51)) and "Tmpfs" not in _hc((1, 51))


# ---- Mounts ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["1.41", "1.44", "1.51"])
def test_mount_point_keys_are_the_specs(spec: str) -> None:
    keys = properties(spec, "MountPoint")
    vol = mount_point_json({"Type": "volume", "Name": "v", "Source": "/s", "Destination": "/d", "Driver": "local",
                            "Mode": "z", "RW": False, "Propagation": ""})
    assert list(vol) == keys
    bind = mount_point_json({"Type": "bind", "Source": "/s", "Destination": "/d", "Propagation": "rprivate"})
    assert list(bind) == [k for k in keys if k not in ("Name", "Driver")]


def test_mount_point_defaults() -> None:
    out = mount_point_json({})
    assert out == {"Type": "bind", "Source": "", "Destination": "", "Mode": "", "RW": True, "Propagation": ""}
    assert mount_point_json({"Type": "volume", "RW": 0})["RW"] is False
