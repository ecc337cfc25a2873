"""Unit tests of the pure renderers of api/networks.py at API 1.41, 1.44 and 1.51, on synthetic endpoints (the
captured dockerd 20.10 answers are compared in test_network_json.py): the keys each version's spec defines, what a
never-started, stopped, host/none and ``container:`` container shows, ports, and the network views."""

from __future__ import annotations

from typing import Any

import pytest

from dockwright.api.networks import (
    PREDEFINED,
    endpoint_settings_json,
    network_json,
    network_mode_json,
    network_name,
    network_settings_json,
    summary_network_settings_json,
    summary_ports_json,
)
from dockwright.network.endpoint import Attachment, EndpointRef, NetworkInfo, PortMapping

from specdefs import properties

VERSIONS = [("1.41", (1, 41)), ("1.44", (1, 44)), ("1.51", (1, 51))]
NET_ID = "n" * 64


def running(**kw: Any) -> Attachment:
    fields: dict[str, Any] = dict(network="bridge", network_id=NET_ID, endpoint_id="e" * 64, sandbox_id="s" * 64,
                                  sandbox_key="/var/run/docker/netns/abc", ip_address="172.17.0.2", prefix_len=16,
                                  gateway="172.17.0.1", mac="02:42:ac:11:00:02",
                                  ports=[PortMapping(80, "tcp", "", 8080), PortMapping(53, "udp", "127.0.0.1", 5353)])
    fields.update(kw)
    return Attachment(**fields)


def stopped() -> Attachment:
    return Attachment(network="bridge", network_id=NET_ID, sandbox_id="s" * 64, sandbox_key="/k")


EXPOSED = {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}


# ---- the keys per version ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,version", VERSIONS)
def test_endpoint_settings_keys_and_order_are_the_specs(spec: str, version: tuple[int, int]) -> None:
    ep = endpoint_settings_json(running(), version)
    keys = properties(spec, "EndpointSettings")
    assert set(ep) == set(keys)
    if version < (1, 44):
        assert list(ep) == keys  # 20.10's order is the spec's
    assert list(ep)[:3] == ["IPAMConfig", "Links", "Aliases"]


@pytest.mark.parametrize("spec,version", VERSIONS)
def test_network_settings_keys_are_the_specs(spec: str, version: tuple[int, int]) -> None:
    ns = network_settings_json("default", running(), running=True, exposed=EXPOSED, version=version)
    assert set(ns) == set(properties(spec, "NetworkSettings"))
    if version < (1, 44):
        assert list(ns) == properties(spec, "NetworkSettings")
    else:
        assert list(ns)[:4] == ["Bridge", "SandboxID", "SandboxKey", "Ports"]


@pytest.mark.parametrize("spec,version", VERSIONS)
def test_summary_port_keys_are_the_specs(spec: str, version: tuple[int, int]) -> None:
    keys = set(properties(spec, "Port"))
    ports = summary_ports_json(running(), EXPOSED)
    assert ports and all(set(p) <= keys for p in ports)
    assert {"PrivatePort", "Type"} <= set.intersection(*(set(p) for p in ports))


@pytest.mark.parametrize("spec,version", VERSIONS)
def test_network_keys_are_the_specs(spec: str, version: tuple[int, int]) -> None:
    keys = set(properties(spec, "Network"))
    out = network_json(bridge(), version)
    assert keys - set(out) == {"Peers"}  # omitempty
    assert set(out) <= keys
    assert set(out["IPAM"]) == set(properties(spec, "IPAM"))
    assert ("EnableIPv4" in out) == (version >= (1, 48))


# ---- endpoint values ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("_spec,version", VERSIONS)
def test_endpoint_of_a_running_container(_spec: str, version: tuple[int, int]) -> None:
    att = running()
    ep = endpoint_settings_json(att, version)
    assert (ep["NetworkID"], ep["EndpointID"], ep["Gateway"], ep["IPAddress"], ep["IPPrefixLen"],
            ep["MacAddress"]) == (NET_ID, att.endpoint_id, "172.17.0.1", "172.17.0.2", 16, att.mac)
    assert ep["IPAMConfig"] is None and ep["Links"] is None and ep["Aliases"] is None and ep["DriverOpts"] is None
    assert (ep["IPv6Gateway"], ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"]) == ("", "", 0)
    if version >= (1, 44):
        assert ep["DNSNames"] is None
    if version >= (1, 48):
        assert ep["GwPriority"] == 0


@pytest.mark.parametrize("_spec,version", VERSIONS)
def test_endpoint_of_a_stopped_or_never_started_container(_spec: str, version: tuple[int, int]) -> None:
    ep = endpoint_settings_json(stopped(), version)
    assert ep["NetworkID"] == NET_ID
    assert (ep["EndpointID"], ep["Gateway"], ep["IPAddress"], ep["IPPrefixLen"], ep["MacAddress"]) == ("", "", "", 0,
                                                                                                      "")
    never = endpoint_settings_json(None, version)
    assert never["NetworkID"] == "" and never["EndpointID"] == ""
    assert list(never) == list(ep)


# ---- NetworkSettings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("_spec,version", VERSIONS)
def test_settings_of_a_running_bridge_container(_spec: str, version: tuple[int, int]) -> None:
    att = running()
    ns = network_settings_json("default", att, running=True, exposed=EXPOSED, version=version)
    assert (ns["SandboxID"], ns["SandboxKey"]) == (att.sandbox_id, att.sandbox_key)
    assert (ns["IPAddress"], ns["Gateway"], ns["MacAddress"], ns["EndpointID"]) == (
        "172.17.0.2", "172.17.0.1", att.mac, att.endpoint_id)
    assert ns["Bridge"] == "" and ns["HairpinMode"] is False and ns["SecondaryIPAddresses"] is None
    assert list(ns["Networks"]) == ["bridge"]
    assert ns["Ports"] == {"443/tcp": None, "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
                           "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert list(ns["Ports"]) == sorted(ns["Ports"])


@pytest.mark.parametrize("_spec,version", VERSIONS)
def test_settings_of_a_created_container(_spec: str, version: tuple[int, int]) -> None:
    ns = network_settings_json("default", None, running=False, exposed=EXPOSED, version=version)
    assert (ns["SandboxID"], ns["SandboxKey"], ns["IPAddress"], ns["Ports"]) == ("", "", "", {})
    assert ns["Networks"]["bridge"]["NetworkID"] == ""


def test_settings_of_a_stopped_container_keep_the_sandbox_below_1_46() -> None:
    old = network_settings_json("default", stopped(), running=False, exposed=EXPOSED, version=(1, 44))
    assert (old["SandboxID"], old["SandboxKey"]) == ("s" * 64, "/k")
    new = network_settings_json("default", stopped(), running=False, exposed=EXPOSED, version=(1, 51))
    assert (new["SandboxID"], new["SandboxKey"]) == ("", "")
    for ns in (old, new):
        assert ns["Ports"] == {} and ns["IPAddress"] == "" and ns["Networks"]["bridge"]["NetworkID"] == NET_ID


@pytest.mark.parametrize("mode", ["host", "none"])
def test_settings_on_host_and_none_have_no_address_or_ports(mode: str) -> None:
    att = Attachment(network=mode, network_id="h" * 64, endpoint_id="x" * 64, sandbox_id="s" * 64,
                     sandbox_key="/var/run/docker/netns/default")
    ns = network_settings_json(mode, att, running=True, exposed=EXPOSED, version=(1, 51))
    assert list(ns["Networks"]) == [mode]
    assert ns["Ports"] == {} and ns["IPAddress"] == "" and ns["EndpointID"] == ""
    assert ns["SandboxID"] == "s" * 64
    assert ns["Networks"][mode]["EndpointID"] == "x" * 64
    assert summary_ports_json(att, EXPOSED) == []


def test_settings_of_a_container_sharing_anothers_namespace() -> None:
    ns = network_settings_json("container:abc", running(), running=True, exposed=EXPOSED, version=(1, 51))
    assert ns["Networks"] == {} and ns["SandboxID"] == "" and ns["Ports"] == {} and ns["IPAddress"] == ""
    assert summary_network_settings_json("container:abc", running(), (1, 51)) == {"Networks": {}}


def test_settings_at_1_52_keep_four_keys() -> None:
    ns = network_settings_json("default", running(), running=True, exposed=EXPOSED, version=(1, 52))
    assert list(ns) == ["SandboxID", "SandboxKey", "Ports", "Networks"]


# ---- list entries ------------------------------------------------------------------------------------------------

def test_summary_network_settings_is_the_endpoint_under_its_name() -> None:
    att = running()
    for version in ((1, 41), (1, 51)):
        assert summary_network_settings_json("default", att, version) == {
            "Networks": {"bridge": endpoint_settings_json(att, version)}}
    assert list(summary_network_settings_json("host", None, (1, 51))["Networks"]) == ["host"]


def test_summary_ports() -> None:
    ports = summary_ports_json(running(), EXPOSED)
    assert {"PrivatePort": 443, "Type": "tcp"} in ports
    assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"} in ports
    assert {"IP": "127.0.0.1", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"} in ports
    assert len(ports) == 3
    assert summary_ports_json(None, EXPOSED) == [] and summary_ports_json(stopped(), EXPOSED) == []


# ---- modes and names ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,name", [("", "bridge"), ("default", "bridge"), ("bridge", "bridge"), ("host", "host"),
                                       ("none", "none"), ("container:abc", ""), ("mynet", "mynet")])
def test_network_name(mode: str, name: str) -> None:
    assert network_name(mode) == name


def test_network_mode_json_default_becomes_bridge_at_1_45() -> None:
    for mode in ("", "default"):
        assert network_mode_json(mode, (1, 41)) == "default"
        assert network_mode_json(mode, (1, 44)) == "default"
        assert network_mode_json(mode, (1, 45)) == "bridge"
        assert network_mode_json(mode, (1, 51)) == "bridge"
        assert network_mode_json(mode) == "bridge"  # no version: the current one
    assert network_mode_json("host", (1, 41)) == "host"
    assert network_mode_json("container:x", (1, 51)) == "container:x"


# ---- networks ----------------------------------------------------------------------------------------------------

def bridge() -> NetworkInfo:
    return NetworkInfo(name="bridge", id="b" * 64, driver="bridge", created="2020-01-01T00:00:00.123456789Z",
                       subnet="172.17.0.0/16", gateway="172.17.0.1", options={"z": "1", "a": "2"},
                       containers=[EndpointRef("c2" * 32, "two", "e2", "m2", "172.17.0.3/16"),
                                   EndpointRef("c1" * 32, "one", "e1", "m1", "172.17.0.2/16")])


def test_network_json_values() -> None:
    out = network_json(bridge(), (1, 51))
    assert (out["Name"], out["Id"], out["Driver"], out["Scope"]) == ("bridge", "b" * 64, "bridge", "local")
    assert out["IPAM"] == {"Driver": "default", "Options": None,
                           "Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}
    assert list(out["Options"]) == ["a", "z"] and out["Labels"] == {}
    assert list(out["Containers"]) == ["c1" * 32, "c2" * 32]
    assert out["Containers"]["c1" * 32] == {"Name": "one", "EndpointID": "e1", "MacAddress": "m1",
                                            "IPv4Address": "172.17.0.2/16", "IPv6Address": ""}
    assert (out["EnableIPv6"], out["Internal"], out["Attachable"], out["Ingress"], out["ConfigOnly"]) == (
        False, False, False, False, False)
    assert out["ConfigFrom"] == {"Network": ""}


def test_network_json_without_containers_and_without_a_subnet() -> None:
    assert network_json(bridge(), (1, 51), containers=False)["Containers"] == {}
    host = NetworkInfo(name="host", id="h" * 64, driver="host", created="x", scope="")
    assert network_json(host, (1, 41))["IPAM"]["Config"] == []
    assert network_json(host, (1, 44))["IPAM"]["Config"] is None
    assert network_json(host, (1, 51))["Scope"] == "local"
    no_gw = NetworkInfo(name="x", id="x", driver="bridge", created="x", subnet="10.0.0.0/8")
    assert network_json(no_gw, (1, 51))["IPAM"]["Config"] == [{"Subnet": "10.0.0.0/8"}]


def test_predefined() -> None:
    assert PREDEFINED == ("bridge", "host", "none")
