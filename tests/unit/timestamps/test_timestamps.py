"""Timestamps: moby's ``GetTimestamp``/``ParseTimestamps`` (timestamp_test.go) and Go's
``time.ParseDuration`` (time_test.go's tables)."""

from __future__ import annotations

import time

import pytest

from dockwright.errors import InvalidArgument
from dockwright.timestamps import (
    format_go_duration,
    get_timestamp,
    parse_go_duration,
    parse_go_duration_ns,
    parse_timestamp,
    parse_timestamps,
)

NOW = 1700000000.75  # a reference time with a fraction, read in UTC below


# -- GetTimestamp (timestamp_test.go TestGetTimestamp) ----------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Partial RFC3339 strings get parsed with second precision
        ("2006-01-02T15:04:05.999999999+07:00", "1136189045.999999999"),
        ("2006-01-02T15:04:05.999999999Z", "1136214245.999999999"),
        ("2006-01-02T15:04:05.999999999", "1136214245.999999999"),
        ("2006-01-02T15:04:05Z", "1136214245.000000000"),
        ("2006-01-02T15:04:05", "1136214245.000000000"),
        ("2006-01-02T15:04Z", "1136214240.000000000"),
        ("2006-01-02T15:04+00:00", "1136214240.000000000"),
        ("2006-01-02T15:04-00:00", "1136214240.000000000"),
        ("2006-01-02T15:04", "1136214240.000000000"),
        ("2006-01-02T15Z", "1136214000.000000000"),
        ("2006-01-02T15+00:00", "1136214000.000000000"),
        ("2006-01-02T15-00:00", "1136214000.000000000"),
        ("2006-01-02T15", "1136214000.000000000"),
        ("2006-01-02T1Z", "1136163600.000000000"),
        ("2006-01-02T1", "1136163600.000000000"),
        ("2006-01-02+00:00", "1136160000.000000000"),
        ("2006-01-02-00:00", "1136160000.000000000"),
        ("2006-01-02-00:01", "1136160060.000000000"),
        ("2006-01-02Z", "1136160000.000000000"),
        ("2006-01-02", "1136160000.000000000"),
        ("2015-05-13T20:39:09Z", "1431549549.000000000"),
        # unix timestamps returned as is
        ("1136073600", "1136073600"),
        ("1136073600.000000001", "1136073600.000000001"),
        ("0", "0"),
        # more
        ("2006-01-02T15:04:05.5Z", "1136214245.500000000"),
        ("2006-01-02T15:04:05,25Z", "1136214245.250000000"),
        ("2006-01-02T15:04:05.1234567891Z", "1136214245.123456789"),
        ("2006-01-02T15:04:05+01:30", "1136208845.000000000"),
        ("2024-02-29T00:00:00Z", "1709164800.000000000"),
        ("1969-12-31T23:59:59Z", "-1.000000000"),
        ("0001-01-01T00:00:00Z", "-62135596800.000000000"),
    ],
)
def test_get_timestamp(value, expected):
    assert get_timestamp(value, NOW, utc_offset=0) == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1m", 60),
        ("1.5h", 90 * 60),
        ("1h30m", 90 * 60),
        ("10s", 10),
        ("-10s", -10),
        ("-0", 0),
        ("+0", 0),
        ("500ms", 0.5),
        ("1µs", 0.000001),
    ],
)
def test_get_timestamp_duration(value, seconds):
    expected = int((NOW - seconds) // 1)
    assert get_timestamp(value, NOW) == str(expected)


def test_get_timestamp_duration_integer_reference():
    assert get_timestamp("10m", 1000) == "400"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2006-01-02T15:04:0Z",
         'parsing time "2006-01-02T15:04:0Z" as "2006-01-02T15:04:05Z07:00": cannot parse "0Z" as "05"'),
        ("2006-01-02T15:04:0", 'parsing time "2006-01-02T15:04:0" as "2006-01-02T15:04:05": cannot parse "0" as "05"'),
        ("2006-01-02T15:0Z", 'parsing time "2006-01-02T15:0Z" as "2006-01-02T15:04Z07:00": cannot parse "0Z" as "04"'),
        ("2006-01-02T15:0", 'parsing time "2006-01-02T15:0" as "2006-01-02T15:04": cannot parse "0" as "04"'),
        ("2006-01-02TZ", 'parsing time "2006-01-02TZ" as "2006-01-02T15Z07:00": cannot parse "Z" as "15"'),
        ("2006-01-02T", 'parsing time "2006-01-02T" as "2006-01-02T15": cannot parse "" as "15"'),
        ("invalid", 'failed to parse value as time or duration: "invalid"'),
        ("", 'failed to parse value as time or duration: ""'),
        ("1136073600.bar", 'failed to parse value as time or duration: "1136073600.bar"'),
        ("2006-13-02", 'parsing time "2006-13-02": month out of range'),
        ("2006-02-30", 'parsing time "2006-02-30": day out of range'),
        ("2006-01-02T25", 'parsing time "2006-01-02T25": hour out of range'),
        ("2006-01-02T15:60Z", 'parsing time "2006-01-02T15:60Z": minute out of range'),
        ("2006-01-02T15:04:61", 'parsing time "2006-01-02T15:04:61": second out of range'),
        ("2006-01-02T15:04:05Zjunk", 'parsing time "2006-01-02T15:04:05Zjunk": extra text: "junk"'),
        ("2006-01-02T15:04:05z",
         'parsing time "2006-01-02T15:04:05z" as "2006-01-02T15:04:05Z07:00": cannot parse "z" as "Z07:00"'),
        ("2006-01-02 15:04:05", 'parsing time "2006-01-02 15:04:05": extra text: " 15:04:05"'),
        ("06-01-02", 'parsing time "06-01-02" as "2006-01-02": cannot parse "06-01-02" as "2006"'),
        ("2006/01/02", 'failed to parse value as time or duration: "2006/01/02"'),
        ("-1", 'parsing time "-1" as "2006-01-02": cannot parse "-1" as "2006"'),
        ("2006-01-02+25:00", 'parsing time "2006-01-02+25:00": time zone offset hour out of range'),
        ("2006-01-02+0700", 'parsing time "2006-01-02+0700" as "2006-01-02Z07:00": cannot parse "+0700" as "Z07:00"'),
        ("2006-1-02", 'parsing time "2006-1-02" as "2006-01-02": cannot parse "1-02" as "01"'),
        ("2006-01-02T15:04:05.Z",
         'parsing time "2006-01-02T15:04:05.Z" as "2006-01-02T15:04:05.999999999Z07:00": '
         'cannot parse ".Z" as "Z07:00"'),
        ("2006-01-02é", 'parsing time "2006-01-02\\xc3\\xa9": extra text: "\\xc3\\xa9"'),
    ],
)
def test_get_timestamp_errors(value, message):
    with pytest.raises(InvalidArgument) as exc:
        get_timestamp(value, NOW, utc_offset=0)
    assert str(exc.value) == message


def test_get_timestamp_zone_of_reference():
    # a value without a zone is read in the reference time's zone
    assert get_timestamp("2006-01-02T15:04:05", NOW, utc_offset=3600) == "1136210645.000000000"
    assert get_timestamp("2006-01-02", NOW, utc_offset=-7200) == "1136167200.000000000"
    # a zone in the value wins
    assert get_timestamp("2006-01-02T15:04:05Z", NOW, utc_offset=3600) == "1136214245.000000000"


def test_get_timestamp_local_zone(monkeypatch):
    if not hasattr(time, "tzset"):
        pytest.skip("no tzset")
    monkeypatch.setenv("TZ", "Etc/GMT-2")  # UTC+2
    time.tzset()
    try:
        assert get_timestamp("2006-01-02T15:04:05", NOW) == "1136207045.000000000"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_get_timestamp_default_reference_is_now():
    before = int(time.time())
    ts = int(get_timestamp("1m"))
    assert before - 61 <= ts <= int(time.time()) - 59


# -- ParseTimestamps (TestParseTimestamps) ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "default", "seconds", "nanos"),
    [
        ("1136073600", 0, 1136073600, 0),
        ("1136073600.000000001", 0, 1136073600, 1),
        ("1136073600.0000000010", 0, 1136073600, 1),
        ("1136073600.0000000001", 0, 1136073600, 0),
        ("1136073600.0000000009", 0, 1136073600, 0),
        ("1136073600.00000001", 0, 1136073600, 10),
        ("1136073600.5", 0, 1136073600, 500000000),
        ("-1.5", 0, -1, 500000000),
        ("", -1, -1, 0),
        ("", 7, 7, 0),
    ],
)
def test_parse_timestamps(value, default, seconds, nanos):
    assert parse_timestamps(value, default) == (seconds, nanos)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("foo.bar", 'strconv.ParseInt: parsing "foo": invalid syntax'),
        ("1136073600.bar", 'strconv.ParseInt: parsing "bar": invalid syntax'),
        ("99999999999999999999", 'strconv.ParseInt: parsing "99999999999999999999": value out of range'),
        ("1.", 'strconv.ParseInt: parsing "": invalid syntax'),
        ("1e3", 'strconv.ParseInt: parsing "1e3": invalid syntax'),
    ],
)
def test_parse_timestamps_errors(value, message):
    with pytest.raises(InvalidArgument) as exc:
        parse_timestamps(value)
    assert str(exc.value) == message


# -- parse_timestamp (GetTimestamp + ParseTimestamps, as the prune filters do) -----------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10m", 1700000000 - 600),
        ("1136073600", 1136073600.0),
        ("1136073600.5", 1136073600.5),
        ("2006-01-02T15:04:05.25Z", 1136214245.25),
        ("2006-01-02", 1136160000.0),
        ("0", 0.0),
    ],
)
def test_parse_timestamp(value, expected):
    assert parse_timestamp(value, NOW, utc_offset=0) == pytest.approx(expected)


def test_parse_timestamp_error():
    with pytest.raises(InvalidArgument, match='^failed to parse value as time or duration: "soon"$'):
        parse_timestamp("soon", NOW)


# -- time.ParseDuration (time_test.go parseDurationTests) ---------------------------------------

S = 1_000_000_000
MS = 1_000_000
US = 1_000
M = 60 * S
H = 60 * M


@pytest.mark.parametrize(
    ("value", "ns"),
    [
        ("0", 0),
        ("5s", 5 * S),
        ("30s", 30 * S),
        ("1478s", 1478 * S),
        ("-5s", -5 * S),
        ("+5s", 5 * S),
        ("-0", 0),
        ("+0", 0),
        ("5.0s", 5 * S),
        ("5.6s", 5 * S + 600 * MS),
        ("5.s", 5 * S),
        (".5s", 500 * MS),
        ("1.0s", 1 * S),
        ("1.00s", 1 * S),
        ("1.004s", 1 * S + 4 * MS),
        ("1.0040s", 1 * S + 4 * MS),
        ("100.00100s", 100 * S + 1 * MS),
        ("10ns", 10),
        ("11us", 11 * US),
        ("12\u00b5s", 12 * US),
        ("12\u03bcs", 12 * US),
        ("13ms", 13 * MS),
        ("14s", 14 * S),
        ("15m", 15 * M),
        ("16h", 16 * H),
        ("3h30m", 3 * H + 30 * M),
        ("10.5s4m", 4 * M + 10 * S + 500 * MS),
        ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
        ("1h2m3s4ms5us6ns", 1 * H + 2 * M + 3 * S + 4 * MS + 5 * US + 6),
        ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
        ("52763797000ns", 52763797000),
        ("0.3333333333333333333h", 20 * M),
        ("9007199254740993ns", (1 << 53) + 1),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("9223372036854775.807us", (1 << 63) - 1),
        ("9223372036s854ms775us807ns", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
        ("-9223372036854775.808us", -(1 << 63)),
        ("-9223372036s854ms775us808ns", -(1 << 63)),
        ("-2562047h47m16.854775808s", -(1 << 63)),
        ("0.100000000000000000000h", 6 * M),
        ("0.830103483285477580700h", 49 * M + 48 * S + 372539827),
    ],
)
def test_parse_go_duration(value, ns):
    assert parse_go_duration_ns(value) == ns
    assert parse_go_duration(value) == pytest.approx(ns / 1e9)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("3", 'time: missing unit in duration "3"'),
        ("-", 'time: invalid duration "-"'),
        ("s", 'time: invalid duration "s"'),
        (".", 'time: invalid duration "."'),
        ("-.", 'time: invalid duration "-."'),
        (".s", 'time: invalid duration ".s"'),
        ("+.s", 'time: invalid duration "+.s"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("1.5", 'time: missing unit in duration "1.5"'),
        ("\x85\x85", 'time: invalid duration "\\xc2\\x85\\xc2\\x85"'),
        ("\ufffd", 'time: invalid duration "\\xef\\xbf\\xbd"'),
        ("\ufffd hello \ufffd world", 'time: invalid duration "\\xef\\xbf\\xbd hello \\xef\\xbf\\xbd world"'),
        ("10 s", 'time: unknown unit " s" in duration "10 s"'),
        ("9223372036854775810ns", 'time: invalid duration "9223372036854775810ns"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
        ("9223372036854776us", 'time: invalid duration "9223372036854776us"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
        ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
        ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"'),
    ],
)
def test_parse_go_duration_errors(value, message):
    with pytest.raises(ValueError) as exc:
        parse_go_duration_ns(value)
    assert str(exc.value) == message
    with pytest.raises(InvalidArgument) as exc2:
        parse_go_duration(value)
    assert str(exc2.value) == message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1100, "1.1\u00b5s"),
        (2200 * US, "2.2ms"),
        (MS, "1ms"),
        (3300 * MS, "3.3s"),
        (4 * M + 5 * S, "4m5s"),
        (4 * M + 5001 * MS, "4m5.001s"),
        (5 * H + 6 * M + 7001 * MS, "5h6m7.001s"),
        (8 * M + 1, "8m0.000000001s"),
        (90 * M, "1h30m0s"),
        ((1 << 63) - 1, "2562047h47m16.854775807s"),
        (-(1 << 63), "-2562047h47m16.854775808s"),
        (-1, "-1ns"),
    ],
)
def test_format_go_duration(ns, text):
    assert format_go_duration(ns) == text
