"""The networking JSON of api/networks.py against what dockerd 20.10 answered (docs/reference/dockerd-20.10-network,
API 1.41 and 1.24) and against the Engine API specs' definitions for 1.44, 1.51 and master.

Each reference case is rebuilt from the capture itself: the Attachment/NetworkInfo are made from the IDs,
addresses and published ports dockerd reported, then rendered and compared with dockerd's document — values and
key order (Go emits struct fields in declaration order and map keys sorted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dockwright.api.networks import (
    default_bridge_options,
    endpoint_settings_json,
    filter_networks,
    network_json,
    network_mode_json,
    network_name,
    network_settings_json,
    summary_network_settings_json,
    summary_ports_json,
)
from dockwright.errors import InvalidArgument, SystemError_
from dockwright.filters import Filters
from dockwright.network.endpoint import Attachment, EndpointRef, NetworkInfo, PortMapping

REF = Path(__file__).resolve().parents[3] / "docs" / "reference" / "dockerd-20.10-network"
SWAGGER = json.loads((REF / "swagger-keys.json").read_text())
CAPTURED_VERSIONS = [(1, 41), (1, 24)]


def load(name: str) -> Any:
    return json.loads((REF / name).read_text())


def vname(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def ordered(obj: Any) -> str:
    """JSON text that keeps key order: equal only when values and order are."""
    return json.dumps(obj, indent=1)


# ---------------------------------------------------------------------------------------------- from the captures


def ports_from(ns_ports: dict[str, Any]) -> list[PortMapping]:
    """The publications of a captured ``NetworkSettings.Ports`` (``0.0.0.0`` back to dockwright's ``""``)."""
    out = []
    for key, bindings in ns_ports.items():
        port, proto = key.split("/")
        for b in bindings or []:
            host_ip = "" if b["HostIp"] == "0.0.0.0" else b["HostIp"]
            out.append(PortMapping(int(port), proto, host_ip, int(b["HostPort"])))
    return out


def attachment_from(doc: dict[str, Any]) -> Attachment | None:
    """The Attachment the engine would hold for a captured container: None when dockerd shows no network ID
    (never started), else the endpoint's fields, the sandbox and the published ports."""
    ns = doc["NetworkSettings"]
    if not ns["Networks"]:
        return None
    (name, ep), = ns["Networks"].items()
    if not ep["NetworkID"]:
        return None
    return Attachment(network=name, network_id=ep["NetworkID"], endpoint_id=ep["EndpointID"],
                      sandbox_id=ns["SandboxID"], sandbox_key=ns["SandboxKey"], ip_address=ep["IPAddress"],
                      prefix_len=ep["IPPrefixLen"], gateway=ep["Gateway"], mac=ep["MacAddress"],
                      ports=ports_from(ns["Ports"]))


INSPECT_CASES = [
    "created", "created-ports", "created-publish-all", "running", "publish-all", "plain", "add-host", "dns",
    "hostname-set", "running-stopped", "net-none", "net-none-stopped", "net-none-created", "net-host",
    "net-host-stopped", "net-host-created", "none-expose", "host-publish", "net-container",
]


@pytest.mark.parametrize("version", CAPTURED_VERSIONS, ids=vname)
@pytest.mark.parametrize("case", INSPECT_CASES)
def test_inspect_network_settings_as_dockerd_20_10(case: str, version: tuple[int, int]) -> None:
    doc = load(f"inspect-{case}-v{vname(version)}.json")
    running = doc["State"]["Running"]
    got = network_settings_json(doc["HostConfig"]["NetworkMode"], attachment_from(doc), running=running,
                                exposed=doc["Config"].get("ExposedPorts"), version=version)
    assert ordered(got) == ordered(doc["NetworkSettings"])


def test_inspect_restarted_container() -> None:
    doc = load("inspect-running-restarted-v1.41.json")
    got = network_settings_json("default", attachment_from(doc), running=True,
                                exposed=doc["Config"]["ExposedPorts"], version=(1, 41))
    assert ordered(got) == ordered(doc["NetworkSettings"])


@pytest.mark.parametrize("version", CAPTURED_VERSIONS, ids=vname)
def test_network_mode_as_dockerd_20_10(version: tuple[int, int]) -> None:
    for case in ("created", "running", "net-none", "net-host", "net-container"):
        doc = load(f"inspect-{case}-v{vname(version)}.json")
        mode = doc["HostConfig"]["NetworkMode"]
        assert network_mode_json("" if mode == "default" else mode, version) == mode


def test_network_mode_default_is_bridge_from_1_45() -> None:
    assert network_mode_json("default", (1, 44)) == "default"
    assert network_mode_json("default", (1, 45)) == "bridge"
    assert network_mode_json("", (1, 51)) == "bridge"
    assert network_mode_json("host", (1, 51)) == "host"
    assert network_mode_json("container:abc", (1, 24)) == "container:abc"
    assert network_name("default") == network_name("") == "bridge"
    assert network_name("container:abc") == ""


def summaries(name: str) -> dict[str, dict[str, Any]]:
    return {c["Names"][0].lstrip("/"): c for c in load(name)}


def _exposed(case: str, version: tuple[int, int]) -> dict[str, Any] | None:
    suffix = "-stopped" if case.endswith("-stopped") else ""
    base = case.removesuffix("-stopped")
    return load(f"inspect-{base}{suffix}-v{vname(version)}.json")["Config"].get("ExposedPorts")


@pytest.mark.parametrize("version", CAPTURED_VERSIONS, ids=vname)
@pytest.mark.parametrize("listing", ["containers-list-all", "containers-list-all-after-stop"])
def test_summary_as_dockerd_20_10(listing: str, version: tuple[int, int]) -> None:
    items = summaries(f"{listing}-v{vname(version)}.json")
    assert items
    for cname, item in items.items():
        stopped = listing.endswith("after-stop") and cname in ("running", "net-none", "net-host")
        doc = load(f"inspect-{cname}{'-stopped' if stopped else ''}-v{vname(version)}.json")
        mode = doc["HostConfig"]["NetworkMode"]
        att = attachment_from(doc)
        got_ns = summary_network_settings_json(mode, att, version)
        assert ordered(got_ns) == ordered(item["NetworkSettings"]), cname
        got_ports = summary_ports_json(att, doc["Config"].get("ExposedPorts"))
        key = lambda p: (p["PrivatePort"], p["Type"], p.get("PublicPort", 0), p.get("IP", ""))  # noqa: E731
        assert got_ports == sorted(item["Ports"], key=key), cname  # dockerd's order is its map's: random
        for p in got_ports:  # and each entry's keys in Go's order, IP and PublicPort left out when empty
            ref = next(r for r in item["Ports"] if key(r) == key(p))
            assert list(p) == list(ref)
        assert network_mode_json("" if mode == "default" else mode, version) == item["HostConfig"]["NetworkMode"]


def test_summary_ports_examples() -> None:
    att = Attachment(network="bridge", network_id="n" * 64, endpoint_id="e" * 64, ip_address="172.17.0.2",
                     prefix_len=16, gateway="172.17.0.1", mac="02:42:ac:11:00:02",
                     ports=[PortMapping(80, "tcp", "127.0.0.1", 32770), PortMapping(80, "udp", "", 8080)])
    assert summary_ports_json(att, {"80/tcp": {}, "80/udp": {}, "90/tcp": {}}) == [
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 32770, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "udp"},
        {"PrivatePort": 90, "Type": "tcp"},
    ]
    stopped = Attachment(network="bridge", network_id="n" * 64)
    assert summary_ports_json(stopped, {"90/tcp": {}}) == []
    assert summary_ports_json(None, {"90/tcp": {}}) == []


# ---------------------------------------------------------------------------------------------- networks


def infos_from(docs: list[dict[str, Any]]) -> list[NetworkInfo]:
    out = []
    for d in docs:
        cfg = d["IPAM"]["Config"] or [{}]
        refs = [EndpointRef(cid, e["Name"], e["EndpointID"], e["MacAddress"], e["IPv4Address"])
                for cid, e in d["Containers"].items()]
        out.append(NetworkInfo(name=d["Name"], id=d["Id"], driver=d["Driver"], created=d["Created"],
                               scope=d["Scope"], subnet=cfg[0].get("Subnet", ""), gateway=cfg[0].get("Gateway", ""),
                               options=d["Options"], internal=d["Internal"], containers=refs))
    return out


_NETWORK_CAPTURES = [(name, version) for name in ["bridge", "host", "none", "bridge-verbose", "bridge-after-stops"]
                     for version in CAPTURED_VERSIONS if (REF / f"network-{name}-v{vname(version)}.json").exists()]


@pytest.mark.parametrize(("name", "version"), _NETWORK_CAPTURES,
                         ids=[f"{n}-{vname(v)}" for n, v in _NETWORK_CAPTURES])
def test_network_inspect_as_dockerd_20_10(name: str, version: tuple[int, int]) -> None:
    path = REF / f"network-{name}-v{vname(version)}.json"
    doc = load(path.name)
    (info,) = infos_from([doc])
    assert ordered(network_json(info, version, containers=True)) == ordered(doc)


@pytest.mark.parametrize("version", CAPTURED_VERSIONS, ids=vname)
def test_network_list_as_dockerd_20_10(version: tuple[int, int]) -> None:
    listing = load(f"networks-list-v{vname(version)}.json")
    # the list at 1.41 has no Containers: take the attachments from the inspect documents
    full = {d["Name"]: d for d in (load(f"network-{n}-v{vname(version)}.json") for n in ("bridge", "host", "none"))}
    infos = {i.name: i for i in infos_from(list(full.values()))}
    if version < (1, 28):  # the 1.24 list was answered a moment after the inspects: take its own attachments
        infos = {i.name: i for i in infos_from(listing)}
    for item in listing:
        got = network_json(infos[item["Name"]], version, containers=version < (1, 28))
        assert ordered(got) == ordered(item)
    assert any(item["Containers"] for item in listing) == (version < (1, 28))


def test_default_bridge_options_as_dockerd() -> None:
    doc = load("network-bridge-v1.41.json")
    assert default_bridge_options("docker0") == doc["Options"]


def _http_json(name: str) -> tuple[int, Any]:
    head, _, body = (REF / name).read_text().partition("\n\n")
    return int(head.split()[1]), json.loads(body)


def _infos() -> list[NetworkInfo]:
    return infos_from([load(f"network-{n}-v1.41.json") for n in ("none", "host", "bridge")])


@pytest.mark.parametrize("capture,filters", [
    ("networks-list-filter-type-custom", {"type": ["custom"]}),
    ("networks-list-filter-type-builtin", {"type": ["builtin"]}),
    ("networks-list-filter-name-bri", {"name": ["bri"]}),
    ("networks-list-filter-driver-null", {"driver": ["null"]}),
    ("networks-list-filter-dangling-true", {"dangling": ["true"]}),
    ("networks-list-filter-dangling-false", {"dangling": ["false"]}),
    ("networks-list-filter-scope-local", {"scope": ["local"]}),
    ("networks-list-filter-scope-swarm", {"scope": ["swarm"]}),
    ("networks-list-filter-scope-bogus", {"scope": ["xx"]}),
    ("networks-list-filter-label-a", {"label": ["a"]}),
])
def test_network_filters_as_dockerd_20_10(capture: str, filters: dict[str, list[str]]) -> None:
    status, body = _http_json(f"{capture}-v1.41.http")
    assert status == 200
    got = filter_networks(_infos(), Filters.from_dict(filters))
    assert sorted(n.name for n in got) == sorted(n["Name"] for n in body)


def test_network_filter_id_prefix() -> None:
    status, body = _http_json("networks-list-filter-id-prefix-v1.41.http")
    got = filter_networks(_infos(), Filters.from_dict({"id": [body[0]["Id"][:4]]}))
    assert [n.name for n in got] == ["bridge"]


def test_network_filter_errors_as_dockerd() -> None:
    status, body = _http_json("err-networks-list-filter-dangling-bogus-v1.41.http")
    with pytest.raises(InvalidArgument) as exc:
        filter_networks(_infos(), Filters.from_dict({"dangling": ["maybe"]}))
    assert (status, str(exc.value)) == (400, body["message"])
    status, body = _http_json("err-networks-list-filter-type-bogus-v1.41.http")
    with pytest.raises(SystemError_) as exc2:  # 500, as dockerd
        filter_networks(_infos(), Filters.from_dict({"type": ["bogus"]}))
    assert (status, str(exc2.value)) == (500, body["message"])


# ---------------------------------------------------------------------------------------------- later API versions

def _running() -> tuple[Attachment, dict[str, Any]]:
    doc = load("inspect-running-v1.41.json")
    att = attachment_from(doc)
    assert att is not None
    return att, doc["Config"]["ExposedPorts"]


# The Go struct orders (moby api/types): EndpointSettings at v25.0.5 (API 1.44), v27.0.1 (1.46), v28.5.2 (1.48+);
# NetworkSettingsBase + DefaultNetworkSettings at v25.0.5 and later.
_ENDPOINT_ORDER = {
    (1, 44): ["IPAMConfig", "Links", "Aliases", "MacAddress", "NetworkID", "EndpointID", "Gateway", "IPAddress",
              "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "DriverOpts", "DNSNames"],
    (1, 46): ["IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts", "NetworkID", "EndpointID", "Gateway",
              "IPAddress", "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "DNSNames"],
    (1, 51): ["IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts", "GwPriority", "NetworkID", "EndpointID",
              "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen",
              "DNSNames"],
}
_SETTINGS_ORDER_1_44 = ["Bridge", "SandboxID", "SandboxKey", "Ports", "HairpinMode", "LinkLocalIPv6Address",
                        "LinkLocalIPv6PrefixLen", "SecondaryIPAddresses", "SecondaryIPv6Addresses", "EndpointID",
                        "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
                        "IPv6Gateway", "MacAddress", "Networks"]


@pytest.mark.parametrize("spec", ["1.41", "1.44", "1.51", "1.56"])
def test_keys_are_the_specs(spec: str) -> None:
    version = (1, 52) if spec == "1.56" else tuple(int(x) for x in spec.split("."))
    keys = SWAGGER[spec]
    att, exposed = _running()
    ns = network_settings_json("default", att, running=True, exposed=exposed, version=version)
    assert set(ns) == set(keys["NetworkSettings"])
    assert set(ns["Networks"]["bridge"]) == set(keys["EndpointSettings"])
    assert set(summary_network_settings_json("default", att, version)) == set(
        keys["ContainerSummary.NetworkSettings"])
    port_keys = set(keys.get("Port") or keys["PortSummary"])
    for p in summary_ports_json(att, exposed):
        assert set(p) <= port_keys
    net_def = keys.get("NetworkInspect") or keys["Network"]
    for info in _infos():
        nj = network_json(info, version)
        # Peers and Services are omitted when empty (omitempty); Status (1.52) is beyond dockwright's 1.51
        assert set(net_def) - set(nj) <= {"Peers", "Services", "Status"}
        assert set(nj) <= set(net_def) | ({"Containers"} if spec != "1.56" else set())
        assert set(nj["IPAM"]) == set(keys["IPAM"])
        for entry in nj["IPAM"]["Config"] or []:
            assert set(entry) <= set(keys["IPAMConfig"])


@pytest.mark.parametrize("version", [(1, 44), (1, 46), (1, 51)], ids=vname)
def test_endpoint_order_at_later_versions(version: tuple[int, int]) -> None:
    att, _ = _running()
    ep = endpoint_settings_json(att, version)
    assert list(ep) == _ENDPOINT_ORDER[version]
    assert ep["DNSNames"] is None and ep["MacAddress"] == att.mac and ep["NetworkID"] == att.network_id
    if version >= (1, 48):
        assert ep["GwPriority"] == 0


def test_network_settings_at_1_44_and_later() -> None:
    att, exposed = _running()
    ref = load("inspect-running-v1.41.json")["NetworkSettings"]
    for version in ((1, 44), (1, 51)):
        ns = network_settings_json("default", att, running=True, exposed=exposed, version=version)
        assert list(ns) == _SETTINGS_ORDER_1_44
        for key in _SETTINGS_ORDER_1_44[:-1]:
            assert ns[key] == ref[key], key
    ns = network_settings_json("default", att, running=True, exposed=exposed, version=(1, 52))
    assert list(ns) == ["SandboxID", "SandboxKey", "Ports", "Networks"]


def test_stopped_container_sandbox_cleared_from_1_46() -> None:
    doc = load("inspect-running-stopped-v1.41.json")
    att = attachment_from(doc)
    assert att is not None and not att.connected and att.sandbox_id
    old = network_settings_json("default", att, running=False, exposed=None, version=(1, 45))
    assert (old["SandboxID"], old["SandboxKey"]) == (att.sandbox_id, att.sandbox_key)
    new = network_settings_json("default", att, running=False, exposed=None, version=(1, 46))
    assert (new["SandboxID"], new["SandboxKey"]) == ("", "")
    assert new["Networks"]["bridge"]["NetworkID"] == att.network_id
    assert new["Ports"] == {}


def test_network_json_later_versions() -> None:
    bridge, host = next(i for i in _infos() if i.name == "bridge"), next(i for i in _infos() if i.name == "host")
    b = network_json(bridge, (1, 51))
    assert list(b)[:7] == ["Name", "Id", "Created", "Scope", "Driver", "EnableIPv4", "EnableIPv6"]
    assert b["EnableIPv4"] is True
    assert "EnableIPv4" not in network_json(bridge, (1, 47))
    assert network_json(host, (1, 43))["IPAM"]["Config"] == []
    assert network_json(host, (1, 44))["IPAM"]["Config"] is None
    assert b["IPAM"]["Config"] == [{"Subnet": bridge.subnet, "Gateway": bridge.gateway}]
