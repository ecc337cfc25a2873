"""More unit tests of api/bodies.py (test_bodies.py holds Go's type and syntax messages): how a create body splits
into Config, HostConfig and NetworkingConfig, commit bodies, whitespace and trailing values, plain ``loads``,
``decode_value`` for scalars."""

from __future__ import annotations

import pytest

from dockwright.api import bodies
from dockwright.api.errors import status_of
from dockwright.errors import InvalidArgument


def test_create_splits_the_wrapper_into_its_three_structs() -> None:
    b = bodies.decode_create(b'{"Image":"busybox","Cmd":"echo hi","Env":["A=1"],"HostConfig":{"Memory":5},'
                             b'"NetworkingConfig":{"EndpointsConfig":{"n":{"Aliases":["a"]}}}}')
    assert b.config == {"Image": "busybox", "Cmd": ["echo hi"], "Env": ["A=1"]}
    assert b.host_config == {"Memory": 5, "NetworkMode": "default"}
    assert b.networking_config == {"EndpointsConfig": {"n": {"Aliases": ["a"]}}}


def test_create_without_host_config_has_none() -> None:
    b = bodies.decode_create(b'{"Image":"x"}')
    assert (b.config, b.host_config, b.networking_config) == ({"Image": "x"}, None, None)


def test_an_empty_host_config_gets_the_default_network_mode() -> None:
    assert bodies.decode_create(b'{"Image":"x","HostConfig":{}}').host_config == {"NetworkMode": "default"}
    hc = bodies.decode_create(b'{"Image":"x","HostConfig":{"NetworkMode":"host"}}').host_config
    assert hc == {"NetworkMode": "host"}


def test_the_deprecated_cpuset_fills_cpuset_cpus() -> None:
    hc = bodies.decode_create(b'{"Image":"x","Cpuset":"0-1","HostConfig":{}}').host_config
    assert hc is not None and hc["CpusetCpus"] == "0-1"
    hc = bodies.decode_create(b'{"Image":"x","Cpuset":"0-1","HostConfig":{"CpusetCpus":"2"}}').host_config
    assert hc is not None and hc["CpusetCpus"] == "2"  # the inner value wins


@pytest.mark.parametrize("raw", [b"", b"   ", b"\n\t\r "])
def test_create_with_no_value_is_eof(raw: bytes) -> None:
    with pytest.raises(InvalidArgument) as exc:
        bodies.decode_create(raw)
    assert str(exc.value) == "invalid JSON: got EOF while reading request body"
    assert status_of(exc.value) == 400


def test_create_trailing_whitespace_is_fine_a_second_value_is_not() -> None:
    assert bodies.decode_create(b'  {"Image":"x"}\n\n').config == {"Image": "x"}
    with pytest.raises(InvalidArgument) as exc:
        bodies.decode_create(b'{"Image":"x"} {}')
    assert str(exc.value) == "unexpected content after JSON"


def test_create_type_error_names_the_wrapper_field() -> None:
    with pytest.raises(InvalidArgument) as exc:
        bodies.decode_create(b'{"Image":1}')
    assert str(exc.value) == ("invalid JSON: json: cannot unmarshal number into Go struct field "
                              "ContainerConfigWrapper.Image of type string")


def test_commit_bodies() -> None:
    assert bodies.decode_commit(b"") is None
    assert bodies.decode_commit(b"  ") is None
    assert bodies.decode_commit(b'{"Cmd":["a"],"Labels":{"k":"v"}}') == {"Cmd": ["a"], "Labels": {"k": "v"}}
    with pytest.raises(InvalidArgument) as exc:
        bodies.decode_commit(b"{")
    assert str(exc.value) == "invalid JSON: unexpected EOF"


def test_loads_values() -> None:
    assert bodies.loads("[1, 2.5, 1e3, true, null]") == [1, 2.5, 1000.0, True, None]
    assert isinstance(bodies.loads("[1e3]")[0], float) and isinstance(bodies.loads("[10]")[0], int)
    assert bodies.loads(b'{"a":{"b":[]}}') == {"a": {"b": []}}
    assert bodies.loads(b'"\xff"') == "\ufffd"  # a byte that is not UTF-8 is U+FFFD, as Go decodes it


@pytest.mark.parametrize("raw,message,eof", [
    ("", "EOF", True),
    ("NaN", "invalid character 'N' looking for beginning of value", False),
    ('{"a":1} x', "unexpected content after JSON", False),
])
def test_loads_errors(raw: str, message: str, eof: bool) -> None:
    with pytest.raises(bodies.GoJSONError) as exc:
        bodies.loads(raw)
    assert str(exc.value) == message
    assert exc.value.eof is eof
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize("raw,go_type,expected", [
    ('"x"', "string", "x"), ("5", "int64", 5), ("true", "bool", True), ("null", "string", ""),
    ('["a","b"]', "[]string", ["a", "b"]),
])
def test_decode_value_scalars(raw: str, go_type: str, expected: object) -> None:
    assert bodies.decode_value(raw, go_type) == expected


def test_decode_value_refuses_a_fraction_for_an_integer() -> None:
    with pytest.raises(InvalidArgument) as exc:
        bodies.decode_value("1.5", "int64")
    assert str(exc.value) == "json: cannot unmarshal number 1.5 into Go value of type int64"
