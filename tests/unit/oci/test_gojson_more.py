"""More unit tests of oci/gojson.py (tests/unit/api/test_gojson.py compares strings and documents with a Go
toolchain): key order, integers and floats, HTML escaping in keys, line ends, and Go's RFC 3339 times.

The float cases were written from Go 1.2x's ``json.Marshal`` output (``1.0`` → ``1``, ``1e-7`` → ``1e-7``)."""

from __future__ import annotations

import json

import pytest

from dockwright.oci.gojson import go_dumps, go_line, parse_rfc3339, rfc3339_nano


def test_keys_keep_the_callers_order_as_a_go_struct_does() -> None:
    assert go_dumps({"b": 1, "a": 2, "c": 3}) == b'{"b":1,"a":2,"c":3}'
    assert go_dumps({"Id": "x", "Created": 1}) == b'{"Id":"x","Created":1}'


def test_compact_and_utf8() -> None:
    out = go_dumps({"a": [1, {"b": None}], "é": "ü"})
    assert out == '{"a":[1,{"b":null}],"é":"ü"}'.encode()
    assert b" " not in out
    assert json.loads(out) == {"a": [1, {"b": None}], "é": "ü"}


def test_html_escaping_applies_to_keys_too() -> None:
    assert go_dumps({"<k&>": ">"}) == b'{"\\u003ck\\u0026\\u003e":"\\u003e"}'
    assert go_dumps({"<k&>": ">"}, escape_html=False) == b'{"<k&>":">"}'


@pytest.mark.parametrize("value,expected", [
    (0, b"0"), (-1, b"-1"), (2**53 + 1, b"9007199254740993"), (-(2**63), b"-9223372036854775808"),
    (2**64 - 1, b"18446744073709551615"), (True, b"true"), (False, b"false"), (None, b"null"),
    (1.5, b"1.5"), (0.1, b"0.1"), (1e21, b"1e+21"),
])
def test_integers_and_the_floats_python_and_go_agree_on(value: object, expected: bytes) -> None:
    assert go_dumps(value) == expected


@pytest.mark.xfail(strict=True, reason="go_dumps writes floats as Python's repr (1.0, 1e-07), not as Go's "
                                       "encoding/json (1, 1e-7): reported to the lead, src unchanged here")
@pytest.mark.parametrize("value,expected", [
    (1.0, b"1"), (123456789.0, b"123456789"), (-0.0, b"0"), (1e-7, b"1e-7"), (1e20, b"100000000000000000000"),
    (0.000001, b"0.000001"), (2.5e-6, b"0.0000025"),
])
def test_floats_as_go_writes_them(value: float, expected: bytes) -> None:
    assert go_dumps(value) == expected


def test_go_line_ends() -> None:
    assert go_line({"a": "<"}) == b'{"a":"\\u003c"}\n'
    assert go_line({"a": "<"}, b"\r\n") == b'{"a":"\\u003c"}\r\n'
    assert go_line({"a": "<"}, escape_html=False) == b'{"a":"<"}\n'


@pytest.mark.parametrize("ns,expected", [
    (0, "1970-01-01T00:00:00Z"),
    (1_500_000_000_120_000_000, "2017-07-14T02:40:00.12Z"),  # Go trims the fraction's trailing zeros
    (1_500_000_000_000_000_001, "2017-07-14T02:40:00.000000001Z"),
    (1_500_000_000_999_999_999, "2017-07-14T02:40:00.999999999Z"),
])
def test_rfc3339_nano(ns: int, expected: str) -> None:
    assert rfc3339_nano(ns) == expected


def test_rfc3339_nano_now_is_utc_and_parses_back() -> None:
    s = rfc3339_nano()
    assert s.endswith("Z")
    t = parse_rfc3339(s)
    assert t is not None and t > 1.7e9


@pytest.mark.parametrize("text,expected", [
    ("1970-01-01T00:00:00Z", 0.0),
    ("2017-07-14T02:40:00.12Z", 1_500_000_000.12),
    ("2017-07-14T04:40:00+02:00", 1_500_000_000.0),
    ("2017-07-14T00:40:00-0200", 1_500_000_000.0),
    ("2017-07-14 02:40:00z", 1_500_000_000.0),
    ("2017-07-14T02:40:00", 1_500_000_000.0),  # no zone: UTC
    (" 2017-07-14T02:40:00.5Z ", 1_500_000_000.5),
])
def test_parse_rfc3339(text: str, expected: float) -> None:
    got = parse_rfc3339(text)
    assert got is not None and abs(got - expected) < 1e-6


@pytest.mark.parametrize("text", ["", "yesterday", "0001-01-01T00:00:00Z", "2017-13-01T00:00:00Z",
                                  "2017-02-30T00:00:00Z", "2017-07-14", "17-07-14T02:40:00Z"])
def test_parse_rfc3339_unparsable_or_zero_time_is_none(text: str) -> None:
    assert parse_rfc3339(text) is None
