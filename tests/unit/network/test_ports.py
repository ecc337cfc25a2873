"""network.ports: dockerd's reading of ExposedPorts/PortBindings/PublishAllPorts (its formats, its messages, its
order) and the API views of published ports."""

from __future__ import annotations

import pytest

from dockwright.errors import InvalidArgument, NotSupported
from dockwright.network.endpoint import PortMapping
from dockwright.network.ports import (
    Binding,
    parse_host_port,
    parse_port_key,
    port_map,
    port_summaries,
    requested_ports,
)

# ---------------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "key, expected",
    [("80/tcp", (80, "tcp")), ("80", (80, "tcp")), ("53/udp", (53, "udp")), ("53/UDP", (53, "udp")),
     ("65535/tcp", (65535, "tcp")), ("132/sctp", (132, "sctp"))],
)
def test_port_keys(key: str, expected: tuple[int, str]) -> None:
    assert parse_port_key(key) == expected


@pytest.mark.parametrize(
    "key, message",
    [
        ("aa80", 'invalid port specification: "aa80"'),
        ("0/tcp", 'invalid port specification: "0/tcp"'),
        ("0", 'invalid port specification: "0/tcp"'),
        ("80-90/tcp", 'invalid port specification: "80-90/tcp"'),
        ("65536/tcp", 'invalid port specification: "65536/tcp"'),
        ("", 'invalid port specification: ""'),
        ("/tcp", 'invalid port specification: "/tcp"'),
        ("-1", 'invalid port specification: "-1"'),
        ("80/icmp", "invalid proto: icmp"),
    ],
)
def test_bad_port_keys(key: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_port_key(key)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "value, expected",
    [(None, (0, 0)), ("", (0, 0)), ("0", (0, 0)), ("8080", (8080, 8080)), ("8000-8010", (8000, 8010)),
     ("8080/tcp", (8080, 8080)), ("8080-8080", (8080, 8080)), (8080, (8080, 8080)), (" 8080 ", (8080, 8080))],
)
def test_host_ports(value: object, expected: tuple[int, int]) -> None:
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ("x", 'invalid port specification: "x"'),
        ("8010-8000", 'invalid port specification: "8010-8000"'),
        ("70000", 'invalid port specification: "70000"'),
        ("80-", 'invalid port specification: "80-"'),
        ("0-10", "invalid port range: 0-10"),
        (True, 'invalid port specification: "True"'),
    ],
)
def test_bad_host_ports(value: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_host_port(value)
    assert str(exc.value) == message


def test_requested_ports_docker_run_p() -> None:
    # docker run -p 8080:80 -p 127.0.0.1::443 -p 8000-8010:22 -p 53:53/udp --expose 9000 (no -P)
    bindings = requested_ports(
        {"80/tcp": {}, "443/tcp": {}, "22/tcp": {}, "53/udp": {}, "9000/tcp": {}},
        {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
            "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
            "22/tcp": [{"HostIp": "", "HostPort": "8000-8010"}],
            "53/udp": [{"HostIp": "", "HostPort": "53"}],
        },
        False,
    )
    assert bindings == [
        Binding(53, "udp", "", 53, 53),  # exact host ports first, by container port
        Binding(80, "tcp", "", 8080, 8080),
        Binding(22, "tcp", "", 8000, 8010),  # then ranges and ephemeral ports, by container port
        Binding(443, "tcp", "127.0.0.1", 0, 0),
    ]
    assert str(bindings[2]) == "0.0.0.0:8000-8010:22/tcp"
    assert str(bindings[3]) == "127.0.0.1::443/tcp"


def test_publish_all_gives_exposed_ports_without_binding_an_ephemeral_port() -> None:
    bindings = requested_ports(
        {"80/tcp": {}, "443/tcp": {}, "53/udp": {}},
        {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "8888/tcp": None},
        True,
    )
    assert bindings == [
        Binding(80, "tcp", "", 8080, 8080),
        Binding(53, "udp", "", 0, 0),
        Binding(443, "tcp", "", 0, 0),
        Binding(8888, "tcp", "", 0, 0),  # a PortBindings key without entries counts as exposed
    ]


def test_exposed_ports_alone_publish_nothing() -> None:
    assert requested_ports({"80/tcp": {}}, None, False) == []
    assert requested_ports({"80/tcp": {}}, {"80/tcp": []}, False) == []
    assert requested_ports(None, None, True) == []
    assert requested_ports(["80/tcp"], {}, True) == [Binding(80, "tcp")]


def test_requested_ports_normalizes_keys_addresses_and_duplicates() -> None:
    bindings = requested_ports(
        None,
        {
            "80": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostPort": "8080"}],
            "80/TCP": [{"HostIp": "[::1]", "HostPort": "8080"}, None],
            "81/tcp": [{"HostIp": "::ffff:127.0.0.1", "HostPort": 9090}],
        },
        False,
    )
    assert bindings == [
        Binding(80, "tcp", "", 8080, 8080),
        Binding(80, "tcp", "::1", 8080, 8080),
        Binding(81, "tcp", "127.0.0.1", 9090, 9090),
        Binding(80, "tcp", "", 0, 0),  # the null entry: -p 80
    ]


def test_default_host_ip_is_dockerd_ip_option() -> None:
    assert requested_ports({"80/tcp": {}}, {"81/tcp": [{"HostPort": "81"}]}, True, default_host_ip="127.0.0.1") == [
        Binding(81, "tcp", "127.0.0.1", 81, 81),
        Binding(80, "tcp", "127.0.0.1", 0, 0),
    ]


@pytest.mark.parametrize(
    "exposed, bindings, message",
    [
        (None, {"aa80": [{"HostPort": "80"}]}, 'invalid port specification: "aa80"'),
        (None, {"80/tcp": [{"HostPort": "x"}]}, 'invalid port specification: "x"'),
        (None, {"80/tcp": [{"HostPort": "8080-80"}]}, 'invalid port specification: "8080-80"'),
        (None, {"80/tcp": [{"HostIp": "localhost", "HostPort": "80"}]}, "invalid IP address: localhost"),
        (None, {"80/tcp": [{"HostIp": "1.2.3", "HostPort": "80"}]}, "invalid IP address: 1.2.3"),
        (None, {"80/icmp": [{"HostPort": "80"}]}, "invalid proto: icmp"),
        (None, {"80/tcp": "8080"}, "invalid port bindings for 80/tcp: expected a list"),
        ({"x/tcp": {}}, None, 'invalid port specification: "x/tcp"'),
    ],
)
def test_requested_ports_errors(exposed: object, bindings: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        requested_ports(exposed, bindings, False)  # type: ignore[arg-type]
    assert str(exc.value) == message


def test_sctp_is_refused_clearly() -> None:
    assert requested_ports({"132/sctp": {}}, None, False) == []  # exposing is only metadata
    with pytest.raises(NotSupported, match="sctp"):
        requested_ports(None, {"132/sctp": [{"HostPort": "132"}]}, False)
    with pytest.raises(NotSupported, match="132/sctp"):
        requested_ports({"132/sctp": {}}, None, True)


# ---------------------------------------------------------------------------------------------------- API views


def test_port_map_and_summaries() -> None:
    mappings = [PortMapping(80, "tcp", "", 8080), PortMapping(80, "tcp", "::1", 8080),
                PortMapping(53, "udp", "", 40000)]
    pm = port_map({"80/tcp": {}, "443/tcp": {}}, {"53/udp": [{}], "bad": [{}]}, mappings)
    assert pm == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::1", "HostPort": "8080"}],
        "443/tcp": None,
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "40000"}],
    }
    assert port_summaries(pm) == [
        {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 40000, "Type": "udp"},
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "::1", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
    ]
    assert port_summaries(None) == []
