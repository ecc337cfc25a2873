"""Filters: the ``filters`` parameter as moby's ``api/types/filters`` reads it (from parse_test.go)."""

from __future__ import annotations

import pytest

from dockwright.errors import InvalidArgument
from dockwright.filters import Filters

# -- FromJSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", None, b"", "{}", "null"])
def test_parse_empty(raw):
    f = Filters.parse(raw)
    assert not f
    assert len(f) == 0
    assert f.keys() == []


@pytest.mark.parametrize(
    "raw",
    [
        "anything",
        "['a','list']",
        "{'key': 'value'}",
        '{"key": "value"}',
        "[]",
        '"string"',
        "1",
        '{"key": {"value": "true"}}',
        '{"key": {"value": 1}}',
        '{"key": [1]}',
        '{"a": {"x": true}, "b": ["y"]}',  # neither form as a whole
        '{"key": {"value": true}',
        '{"key": [NaN]}',
        '{"key": {"v": true}} trailing',
    ],
)
def test_parse_invalid(raw):
    with pytest.raises(InvalidArgument) as exc:
        Filters.parse(raw)
    assert str(exc.value) == "invalid filter"


@pytest.mark.parametrize(
    ("expected", "raws"),
    [
        ({"key": {"value"}}, ['{"key": ["value"]}', '{"key": {"value": true}}']),
        (
            {"key": {"value1", "value2"}},
            ['{"key": ["value1", "value2"]}', '{"key": {"value1": true, "value2": true}}'],
        ),
        (
            {"key1": {"value1"}, "key2": {"value2"}},
            ['{"key1": ["value1"], "key2": ["value2"]}', '{"key1": {"value1": true}, "key2": {"value2": true}}'],
        ),
    ],
)
def test_parse_valid(expected, raws):
    for raw in raws:
        f = Filters.parse(raw)
        assert len(f) == len(expected)
        for key, values in expected.items():
            assert set(f.get(key)) == values


def test_parse_current_and_legacy_agree():
    assert Filters.parse('{"dangling":["true"]}') == Filters.parse('{"dangling":{"true":true}}')


def test_parse_key_without_values():
    f = Filters.parse('{"label": null}')
    assert f.contains("label")
    assert f.get("label") == []
    f = Filters.parse('{"label": {}}')
    assert f.contains("label")
    assert f.exact_match("label", "anything")


def test_parse_false_value_is_kept_but_does_not_match():
    f = Filters.parse('{"status": {"running": false}}')
    assert f.get("status") == ["running"]
    assert not f.exact_match("status", "running")


def test_parse_legacy_null_value_is_empty_string():
    f = Filters.parse('{"name": ["a", null]}')
    assert sorted(f.get("name")) == ["", "a"]


def test_parse_bytes():
    assert Filters.parse(b'{"a":{"b":true}}').get("a") == ["b"]


def test_to_json_round_trip():
    f = Filters.from_dict({"created": ["today"], "image.name": ["ubuntu*", "*untu"]})
    assert Filters.parse(f.to_json()) == f
    assert Filters().to_json() == ""
    assert Filters.parse(Filters().to_json()).keys() == []


# -- Add / Del / Len / Contains -------------------------------------------------------------


def test_add_and_len():
    f = Filters()
    assert len(f) == 0
    f.add("status", "running")
    assert f.get("status") == ["running"]
    f.add("status", "paused")
    assert len(f) == 1
    assert f.get("status") == ["running", "paused"]


def test_delete():
    f = Filters()
    f.add("status", "running")
    f.delete("status", "running")
    assert not f.contains("status")
    f.delete("missing", "x")


def test_contains():
    f = Filters()
    assert not f.contains("status")
    f.add("status", "running")
    assert f.contains("status")
    assert "status" in f


def test_from_dict_forms():
    f = Filters.from_dict({"a": "1", "b": ["2", "3"], "c": {"4": True, "5": False}, "d": []})
    assert f.get("a") == ["1"]
    assert f.get("b") == ["2", "3"]
    assert f.get("c") == ["4", "5"]
    assert f.contains("d")
    assert f.get("d") == []


def test_clone_is_independent():
    f = Filters.from_dict({"a": ["1"]})
    g = f.clone()
    g.add("a", "2")
    assert f.get("a") == ["1"]


# -- Validate -------------------------------------------------------------------------------


def test_validate():
    f = Filters()
    f.add("status", "running")
    f.validate({"status", "dangling"})
    f.validate(["status"])
    f.add("bogus", "running")
    with pytest.raises(InvalidArgument) as exc:
        f.validate({"status", "dangling"})
    assert str(exc.value) == "invalid filter 'bogus'"


def test_validate_parsed():
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'foo'$"):
        Filters.parse('{"foo":{"bar":true}}').validate(["label", "dangling"])


# -- matchers -------------------------------------------------------------------------------

SOURCES = {"key1": "value1", "key2": "value2", "key3": "value3"}


def test_match_kv_list_empty_sources():
    assert Filters().match_kv_list("created", {})
    assert not Filters.from_dict({"created": ["today"]}).match_kv_list("created", {})
    assert not Filters.from_dict({"created": ["today"]}).match_kv_list("created", None)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({}, "field"),
        ({"created": ["today"], "labels": ["key1"]}, "labels"),
        ({"created": ["today"], "labels": ["key1=value1"]}, "labels"),
        ({"labels": ["key1", "key2=value2"]}, "labels"),
        ({"labels": []}, "labels"),
    ],
)
def test_match_kv_list_matches(fields, key):
    assert Filters.from_dict(fields).match_kv_list(key, SOURCES)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"created": ["today"]}, "created"),
        ({"created": ["today"], "labels": ["key4"]}, "labels"),
        ({"created": ["today"], "labels": ["key1=value3"]}, "labels"),
        ({"labels": ["key1", "key2=nope"]}, "labels"),
        ({"labels": ["key1="]}, "labels"),
    ],
)
def test_match_kv_list_differs(fields, key):
    assert not Filters.from_dict(fields).match_kv_list(key, SOURCES)


def test_match_kv_list_empty_value():
    assert Filters.from_dict({"label": ["k="]}).match_kv_list("label", {"k": ""})
    assert Filters.from_dict({"label": ["k=a=b"]}).match_kv_list("label", {"k": "a=b"})


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({}, "field"),
        ({"created": ["today"]}, "today"),
        ({"created": ["to*"]}, "created"),
        ({"created": ["to(.*)"]}, "created"),
        ({"created": ["tod"]}, "created"),
        ({"created": ["anything", "to*"]}, "created"),
    ],
)
def test_match_regexp_matches(fields, key):
    assert Filters.from_dict(fields).match(key, "today")


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"created": ["tomorrow"]}, "created"),
        ({"created": ["to(day"]}, "created"),
        ({"created": ["tom(.*)"]}, "created"),
        ({"created": ["tom"]}, "created"),
        ({"created": ["today1"], "labels": ["today"]}, "created"),
    ],
)
def test_match_regexp_differs(fields, key):
    assert not Filters.from_dict(fields).match(key, "today")


def test_exact_match():
    f = Filters()
    assert f.exact_match("status", "running")
    f.add("status", "running")
    f.add("status", "pause*")
    assert f.exact_match("status", "running")
    assert not f.exact_match("status", "paused")


def test_unique_exact_match():
    f = Filters()
    assert f.unique_exact_match("status", "running")
    f.add("status", "running")
    assert f.unique_exact_match("status", "running")
    assert not f.unique_exact_match("status", "paused")
    f.add("status", "pause")
    assert not f.unique_exact_match("status", "running")


@pytest.mark.parametrize(
    ("source", "match"),
    [("foo", True), ("foobar", True), ("barfoo", False), ("bar", False)],
)
def test_fuzzy_match(source, match):
    f = Filters()
    f.add("container", "foo")
    assert f.fuzzy_match("container", source) is match


def test_fuzzy_match_no_filter():
    assert Filters().fuzzy_match("container", "anything")


# -- GetBoolOrDefault -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "default", "expected"),
    [
        (["true"], False, True),
        (["1"], False, True),
        (["false"], True, False),
        (["0"], True, False),
        (["true", "1"], False, True),
        (["false", "0"], True, False),
    ],
)
def test_get_bool_or_default(values, default, expected):
    assert Filters.from_dict({"dangling": values}).get_bool_or_default("dangling", default) is expected


@pytest.mark.parametrize("default", [True, False])
def test_get_bool_or_default_absent(default):
    assert Filters.from_dict({"other": ["x"]}).get_bool_or_default("dangling", default) is default


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["potato"], "invalid filter 'dangling=[potato]'"),
        (["true", "false"], "invalid filter 'dangling=[true false]'"),
        (["1", "0"], "invalid filter 'dangling=[1 0]'"),
        (["TRUE"], "invalid filter 'dangling=[TRUE]'"),
        ([], "invalid filter 'dangling'"),
    ],
)
def test_get_bool_or_default_invalid(values, message):
    with pytest.raises(InvalidArgument) as exc:
        Filters.from_dict({"dangling": values}).get_bool_or_default("dangling", True)
    assert str(exc.value) == message


def test_get_bool_or_default_false_flag_only():
    f = Filters.parse('{"dangling":{"true":false}}')
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'dangling=\[true\]'$"):
        f.get_bool_or_default("dangling", False)


def test_match_labels_is_every_label_and_no_label_bang() -> None:
    f = Filters.parse('{"label": ["a", "b=2"], "label!": ["c"]}')
    assert f.match_labels({"a": "x", "b": "2"})
    assert not f.match_labels({"a": "x", "b": "3"})
    assert not f.match_labels({"a": "x", "b": "2", "c": ""})
    assert not f.match_labels(None)
    assert Filters().match_labels(None) and Filters.parse('{"label!": ["c"]}').match_labels({})
