"""Unit tests of api/params.py: query and header parsing with dockerd's rules and error messages (no daemon)."""

from __future__ import annotations

import base64
import json
import warnings

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from dockwright.api import params
from dockwright.api.errors import status_of
from dockwright.errors import InvalidArgument
from dockwright.oci.platform import Platform


def request(query: str = "", *, version: tuple[int, ...] = (1, 51), headers: dict[str, str] | None = None
            ) -> web.Request:
    """A real aiohttp request for ``/x?<query>`` with the API version the middleware would have set."""
    r = make_mocked_request("GET", "/x" + (f"?{query}" if query else ""), headers=headers or {})
    with warnings.catch_warnings():  # the daemon's middleware stores it under this plain key too
        warnings.simplefilter("ignore")
        r["api_version"] = version
    return r


# ---- booleans (httputils.BoolValue): trimmed, lower-cased; "", 0, no, false, none are false ----------------------

@pytest.mark.parametrize("raw", ["", "0", "no", "false", "none", "FALSE", "No", "%20none%20", "%200%20"])
def test_bool_value_false_words(raw: str) -> None:
    assert params.bool_value(request(f"all={raw}"), "all") is False


@pytest.mark.parametrize("raw", ["1", "true", "yes", "True", "2", "on", "anything", "off"])
def test_bool_value_anything_else_is_true(raw: str) -> None:
    assert params.bool_value(request(f"all={raw}"), "all") is True


def test_bool_value_absent_is_false_and_first_value_wins() -> None:
    assert params.bool_value(request(), "all") is False
    assert params.bool_value(request("all=1&all=0"), "all") is True
    assert params.bool_value(request("all=0&all=1"), "all") is False


def test_bool_default_only_when_absent() -> None:
    assert params.bool_default(request(), "force", True) is True
    assert params.bool_default(request(), "force", False) is False
    assert params.bool_default(request("force="), "force", True) is False  # present but empty: BoolValue's false
    assert params.bool_default(request("force=yes"), "force", False) is True


# ---- integers -----------------------------------------------------------------------------------------------------

def test_int_value() -> None:
    assert params.int_value(request("t=42"), "t") == 42
    assert params.int_value(request("t=-3"), "t") == -3
    assert params.int_value(request(), "t") == 0
    assert params.int_value(request(), "t", 10) == 10
    assert params.int_value(request("t="), "t", 7) == 7


@pytest.mark.parametrize("raw", ["abc", "1.5", "0x10", "1e3"])
def test_int_value_refuses_what_is_not_an_integer(raw: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        params.int_value(request(f"t={raw}"), "t")
    assert str(exc.value) == f"invalid value for t: {raw}"
    assert status_of(exc.value) == 400


# ---- lists: the key repeated, never comma-split -------------------------------------------------------------------

def test_strings_is_the_repeated_key_in_order() -> None:
    assert params.strings(request("t=b&t=a&x=1&t=c"), "t") == ["b", "a", "c"]
    assert params.strings(request("names=a,b"), "names") == ["a,b"]
    assert params.strings(request(), "t") == []


# ---- filters ------------------------------------------------------------------------------------------------------

def test_filters_parse_the_json_map() -> None:
    f = params.filters(request("filters=" + json.dumps({"label": ["a=b"], "dangling": ["true"]})))
    assert f.get("label") == ["a=b"]
    assert f.contains("dangling") and not f.contains("before")
    assert not params.filters(request()).contains("label")


def test_filters_bad_json_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        params.filters(request("filters=%7Bnot-json"))


# ---- the os[/arch[/variant]] specifier (containerd's platforms.Parse, wrapped as 400) ----------------------------

@pytest.mark.parametrize("spec", ["linux", "Linux", "windows", "macos", "amd64", "x86_64", "aarch64", "armhf",
                                  "linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux(10.0)/amd64",
                                  "windows(10.0.17763)", "linux/my_arch", "linux/a.b-c"])
def test_check_platform_specifier_accepts(spec: str) -> None:
    params.check_platform_specifier(spec)


@pytest.mark.parametrize("spec,message", [
    ("foobar", '"foobar": unknown operating system or architecture: invalid argument'),
    ("linux/*", '"linux/*": wildcards not yet supported: invalid argument'),
    ("*", '"*": wildcards not yet supported: invalid argument'),
    ("linux/amd64/v8/extra", '"linux/amd64/v8/extra": cannot parse platform specifier: invalid argument'),
    ("linux/amd 64", '"amd 64" is an invalid component of "linux/amd 64": platform specifier component must match '
                     '"^[A-Za-z0-9_.-]+$": invalid argument'),
    ("linux//v7", '"" is an invalid component of "linux//v7": platform specifier component must match '
                  '"^[A-Za-z0-9_.-]+$": invalid argument'),
    ("(x)/amd64", '"(x)" is an invalid OS component of "(x)/amd64": OSAndVersion specifier component must match '
                  '"^([A-Za-z0-9_-]+)(?:\\\\(([A-Za-z0-9_.-]*)\\\\))?$": invalid argument'),
    ("", '"" is an invalid OS component of "": OSAndVersion specifier component must match '
         '"^([A-Za-z0-9_-]+)(?:\\\\(([A-Za-z0-9_.-]*)\\\\))?$": invalid argument'),
    ("linux\n", '"linux\\n" is an invalid OS component of "linux\\n": OSAndVersion specifier component must match '
                '"^([A-Za-z0-9_-]+)(?:\\\\(([A-Za-z0-9_.-]*)\\\\))?$": invalid argument'),
])
def test_check_platform_specifier_refuses_with_containerds_words(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        params.check_platform_specifier(spec)
    assert str(exc.value) == message
    assert status_of(exc.value) == 400


def test_platform_specifier_is_read_from_api_1_32() -> None:
    assert params.platform_specifier(request("platform=linux/arm64")) == "linux/arm64"
    assert params.platform_specifier(request("platform=linux/arm64", version=(1, 32))) == "linux/arm64"
    assert params.platform_specifier(request("platform=linux/arm64", version=(1, 31))) == ""
    assert params.platform_specifier(request("platform=foobar", version=(1, 31))) == ""  # not even checked
    assert params.platform_specifier(request()) == ""
    assert params.platform_specifier(request("platform=")) == ""
    assert params.platform_specifier(request("p=linux", version=(1, 41)), "p") == "linux"
    with pytest.raises(InvalidArgument, match="unknown operating system or architecture"):
        params.platform_specifier(request("platform=foobar"))


# ---- the JSON platform (DecodePlatform): os and architecture required ---------------------------------------------

def test_json_platform_parses_and_normalises() -> None:
    q = "platform=" + json.dumps({"os": "Linux", "architecture": "aarch64"})
    assert params.json_platform(request(q)) == Platform("linux", "arm64", "")
    q = "platform=" + json.dumps({"os": "linux", "architecture": "arm", "variant": "v5"})
    assert params.json_platform(request(q)) == Platform("linux", "arm", "v5")
    assert params.json_platform(request()) is None
    assert params.json_platform(request("platform=")) is None


def test_json_platform_first_value_only() -> None:
    q = ("platform=" + json.dumps({"os": "linux", "architecture": "amd64"}) + "&platform="
         + json.dumps({"os": "linux", "architecture": "s390x"}))
    p = params.json_platform(request(q))
    assert p is not None and p.architecture == "amd64"


@pytest.mark.parametrize("raw,message", [
    ('{"os":"linux"}', "failed to parse platform: missing architecture field"),
    ('{"architecture":"amd64"}', "failed to parse platform: missing os field"),
    ('{"os":"","architecture":"amd64"}', "failed to parse platform: missing os field"),
    ('["linux"]', "failed to parse platform: not a JSON object"),
    ('"linux/amd64"', "failed to parse platform: not a JSON object"),
])
def test_json_platform_errors(raw: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        params.json_platform(request("platform=" + raw))
    assert str(exc.value) == message


def test_json_platform_syntax_error_is_gos() -> None:
    with pytest.raises(InvalidArgument) as exc:
        params.json_platform(request("platform=%7Bnope"))
    assert str(exc.value).startswith("failed to parse platform: invalid character")
    with pytest.raises(InvalidArgument) as exc:
        params.json_platform(request("platform=" + "[" * 20000))
    assert str(exc.value).startswith("failed to parse platform: ")


# ---- X-Registry-Auth: base64url JSON, padding optional ----------------------------------------------------------

def _auth(value: str) -> web.Request:
    return request(headers={"X-Registry-Auth": value})


def test_registry_auth_base64url_with_and_without_padding() -> None:
    doc = {"username": "u?>", "password": "p~~~", "serveraddress": "r.example"}
    raw = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    assert "-" in raw or "_" in raw  # the url-safe alphabet is exercised
    assert params.registry_auth(_auth(raw)) == doc
    assert params.registry_auth(_auth(raw.rstrip("="))) == doc


def test_registry_auth_standard_base64_is_accepted_too() -> None:
    doc = {"username": "u?>", "password": "p~~~"}
    raw = base64.b64encode(json.dumps(doc).encode()).decode()
    assert "+" in raw or "/" in raw
    assert params.registry_auth(_auth(raw)) == doc


@pytest.mark.parametrize("value", ["", "e30=", "e30", "!!!not base64", base64.b64encode(b"[1,2]").decode(),
                                   base64.b64encode(b"{broken").decode()])
def test_registry_auth_empty_or_unusable_is_empty(value: str) -> None:
    assert params.registry_auth(_auth(value)) == {}
    assert params.registry_auth(request()) == {}


def test_api_version_is_what_the_middleware_set() -> None:
    assert params.api_version(request(version=(1, 41))) == (1, 41)
