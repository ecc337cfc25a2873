"""api.bodies: create and commit bodies decoded as dockerd decodes them (Go's encoding/json into typed structs).

The expected messages are what moby's decoder (runconfig.ContainerDecoder, v25.0.0, built with Go 1.19) answers
for the same bytes.
"""

from __future__ import annotations

import sys

import pytest

from dockwright.api import bodies
from dockwright.errors import InvalidArgument

W = "ContainerConfigWrapper"


def _error(raw: bytes | str) -> str:
    with pytest.raises(InvalidArgument) as exc:
        bodies.decode_create(raw.encode() if isinstance(raw, str) else raw)
    return str(exc.value)


@pytest.mark.parametrize("body,message", [
    ('{"Image":"x","Cmd":5}', f"json: cannot unmarshal number into Go struct field {W}.Cmd of type string"),
    ('{"Image":"x","Cmd":[1]}', f"json: cannot unmarshal array into Go struct field {W}.Cmd of type string"),
    ('{"Image":"x","Entrypoint":{}}', f"json: cannot unmarshal object into Go struct field {W}.Entrypoint of type "
                                      "string"),
    ('{"Image":"x","Env":"A=1"}', f"json: cannot unmarshal string into Go struct field {W}.Env of type []string"),
    ('{"Image":5}', f"json: cannot unmarshal number into Go struct field {W}.Image of type string"),
    ('{"Image":["x"]}', f"json: cannot unmarshal array into Go struct field {W}.Image of type string"),
    ('{"Image":"x","Tty":"true"}', f"json: cannot unmarshal string into Go struct field {W}.Tty of type bool"),
    ('{"Image":"x","Labels":{"a":1}}', f"json: cannot unmarshal number into Go struct field {W}.Labels of type "
                                       "string"),
    ('{"Image":"x","Labels":[]}', f"json: cannot unmarshal array into Go struct field {W}.Labels of type "
                                  "map[string]string"),
    ('{"Image":"x","ExposedPorts":{"80/tcp":5}}', f"json: cannot unmarshal number into Go struct field "
                                                  f"{W}.ExposedPorts of type struct {{}}"),
    ('{"StopTimeout":"5"}', f"json: cannot unmarshal string into Go struct field {W}.StopTimeout of type int"),
    ('{"Healthcheck":{"Interval":"1s"}}', "json: cannot unmarshal string into Go struct field "
                                          "HealthcheckConfig.Healthcheck.Interval of type time.Duration"),
    ('{"Image":"x","HostConfig":{"Memory":"x"}}', "json: cannot unmarshal string into Go struct field "
                                                  "HostConfig.HostConfig.Memory of type int64"),
    ('{"Image":"x","HostConfig":{"Memory":1.5}}', "json: cannot unmarshal number 1.5 into Go struct field "
                                                  "HostConfig.HostConfig.Memory of type int64"),
    ('{"Image":"x","HostConfig":{"Memory":1e3}}', "json: cannot unmarshal number 1e3 into Go struct field "
                                                  "HostConfig.HostConfig.Memory of type int64"),
    ('{"Image":"x","HostConfig":{"Memory":99999999999999999999}}',
     "json: cannot unmarshal number 99999999999999999999 into Go struct field HostConfig.HostConfig.Memory of type "
     "int64"),
    ('{"HostConfig":{"BlkioWeight":65536}}', "json: cannot unmarshal number 65536 into Go struct field "
                                             "HostConfig.HostConfig.BlkioWeight of type uint16"),
    ('{"HostConfig":{"BlkioWeight":-1}}', "json: cannot unmarshal number -1 into Go struct field "
                                          "HostConfig.HostConfig.BlkioWeight of type uint16"),
    ('{"Image":"x","Memory":"x"}', f"json: cannot unmarshal string into Go struct field {W}.Memory of type int64"),
    ('{"Image":"x","HostConfig":{"Binds":"a"}}', "json: cannot unmarshal string into Go struct field "
                                                 "HostConfig.HostConfig.Binds of type []string"),
    ('{"Image":"x","HostConfig":{"RestartPolicy":{"MaximumRetryCount":"a"}}}',
     "json: cannot unmarshal string into Go struct field RestartPolicy.HostConfig.RestartPolicy.MaximumRetryCount "
     "of type int"),
    ('{"HostConfig":{"Mounts":[{"TmpfsOptions":{"Mode":-1}}]}}',
     "json: cannot unmarshal number -1 into Go struct field TmpfsOptions.HostConfig.Mounts.TmpfsOptions.Mode of "
     "type fs.FileMode"),
    ('{"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":8080}]}}}',
     "json: cannot unmarshal number into Go struct field PortBinding.HostConfig.PortBindings.HostPort of type "
     "string"),
    ('{"Image":"x","NetworkingConfig":{"EndpointsConfig":{"a":{"Aliases":"b"}}}}',
     "json: cannot unmarshal string into Go struct field EndpointSettings.NetworkingConfig.EndpointsConfig.Aliases "
     "of type []string"),
    ("[1]", "json: cannot unmarshal array into Go value of type runconfig.ContainerConfigWrapper"),
    ("5", "json: cannot unmarshal number into Go value of type runconfig.ContainerConfigWrapper"),
    ('"str"', "json: cannot unmarshal string into Go value of type runconfig.ContainerConfigWrapper"),
    ("01", "json: cannot unmarshal number into Go value of type runconfig.ContainerConfigWrapper"),
])
def test_a_body_of_the_wrong_types_gets_gos_message(body: str, message: str) -> None:
    assert _error(body) == "invalid JSON: " + message


@pytest.mark.parametrize("body,message", [
    ("{bad", "invalid character 'b' looking for beginning of object key string"),
    ('{"Image":"x",', "unexpected EOF"),
    ('{"Image":"x"', "unexpected EOF"),
    ("nul", "unexpected EOF"),
    ("tru", "unexpected EOF"),
    ("-", "unexpected EOF"),
    ("1.", "unexpected EOF"),
    ('{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    ("{1:2}", "invalid character '1' looking for beginning of object key string"),
    ('{"a" 1}', "invalid character '1' after object key"),
    ("[1,]", "invalid character ']' looking for beginning of value"),
    ('{"a":1,}', "invalid character '}' looking for beginning of object key string"),
    ("NaN", "invalid character 'N' looking for beginning of value"),
    ("Infinity", "invalid character 'I' looking for beginning of value"),
    ('{"a":-Infinity}', "invalid character 'I' in numeric literal"),
    ('{"Image":"x\x01"}', "invalid character '\\x01' in string literal"),
    ('{"Image":"\\x"}', "invalid character 'x' in string escape code"),
    ('{"Image":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
    ('{"Memory":1.}', "invalid character '}' after decimal point in numeric literal"),
    ('{"Memory":1e}', "invalid character '}' in exponent of numeric literal"),
    ('{"Tty":trUe}', "invalid character 'U' in literal true (expecting 'u')"),
    (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
])
def test_a_body_that_is_not_json_gets_gos_syntax_error(body: str | bytes, message: str) -> None:
    assert _error(body) == "invalid JSON: " + message


def test_syntax_errors_come_before_type_errors_and_those_before_trailing_content() -> None:
    assert _error('{"Image":5,"Cmd":[1,]}') == "invalid JSON: invalid character ']' looking for beginning of value"
    assert _error('{"Image":5} x').endswith("ContainerConfigWrapper.Image of type string")
    assert _error('{"Image":"x"} x') == "unexpected content after JSON"
    assert _error('{"Image":"x"},') == "unexpected content after JSON"
    # Go's Decoder.More() is false before a closing bracket: what follows it is not looked at
    assert bodies.decode_create(b'{"Image":"x"}] whatever').config == {"Image": "x"}
    assert bodies.decode_create(b'{"Image":"x"}\n\t ').config == {"Image": "x"}


def test_the_first_type_error_wins_but_a_strslice_error_ends_the_decoding() -> None:
    assert _error('{"Env":"A=1","Tty":"x"}').endswith(f"{W}.Env of type []string")
    # StrSlice has its own UnmarshalJSON: its error is returned at once, over an error saved earlier
    assert _error('{"Env":"A=1","Cmd":5}').endswith(f"{W}.Cmd of type string")


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"Image":"x","Cmd":' + "[" * 100_000 + "]" * 100_000 + "}",
    "[" * 5_000_000,
])
def test_deep_nesting_is_refused_as_go_refuses_it(body: str) -> None:
    limit = sys.getrecursionlimit()
    assert _error(body) == "invalid JSON: invalid character '[' exceeded max depth"
    assert sys.getrecursionlimit() == limit
    assert _error('{"a":' * 100_000 + "1" + "}" * 100_000) == \
        "invalid JSON: invalid character '{' exceeded max depth"


def test_nesting_up_to_gos_limit_is_json_and_an_unknown_field_is_ignored() -> None:
    deep = "[" * 9_999 + "]" * 9_999  # with the body's object: 10000 levels, Go's maximum
    assert bodies.decode_create(f'{{"Image":"x","Unknown":{deep}}}'.encode()).config == {"Image": "x"}
    deeper = "[" * 10_000 + "]" * 10_000
    assert _error(f'{{"Image":"x","Unknown":{deeper}}}') == \
        "invalid JSON: invalid character '[' exceeded max depth"


def test_an_empty_body_is_eof_for_create_and_no_config_for_commit() -> None:
    for raw in (b"", b" \n\t"):
        assert _error(raw) == "invalid JSON: got EOF while reading request body"
        assert bodies.decode_commit(raw) is None
    assert bodies.decode_commit(b"null") is None
    assert bodies.decode_commit(b"{}") is None  # no Config field: Go's *Config stays nil
    with pytest.raises(InvalidArgument, match="ContainerConfigWrapper.Cmd of type string"):
        bodies.decode_commit(b'{"Cmd":5}')
    with pytest.raises(InvalidArgument, match="exceeded max depth"):
        bodies.decode_commit(b"[" * 100_000 + b"]" * 100_000)
    assert bodies.decode_commit(b'{"Cmd":"ls","Env":["A=1"]}') == {"Cmd": ["ls"], "Env": ["A=1"]}


def test_strslice_takes_a_string_or_an_array_of_strings() -> None:
    def cmd(raw: str) -> object:
        cfg = bodies.decode_create(f'{{"Image":"x","Cmd":{raw}}}'.encode()).config
        assert cfg is not None
        return cfg["Cmd"]
    assert cmd('"ls -l"') == ["ls -l"]
    assert cmd('["ls","-l"]') == ["ls", "-l"]
    assert cmd("[]") == []
    assert cmd("null") is None
    assert cmd('["a",null]') == ["a", ""]  # null into a string element leaves it ""
    cfg = bodies.decode_create(b'{"Image":"x","Entrypoint":"sh","Shell":["bash","-c"]}').config
    assert cfg == {"Image": "x", "Entrypoint": ["sh"], "Shell": ["bash", "-c"]}
    hc = bodies.decode_create(b'{"HostConfig":{"CapAdd":"NET_ADMIN"}}').host_config
    assert hc is not None and hc["CapAdd"] == ["NET_ADMIN"]


def test_null_clears_pointers_slices_and_maps_and_leaves_the_rest() -> None:
    cfg = bodies.decode_create(b'{"Image":"x","Hostname":null,"Tty":null,"Env":null,"Labels":null,'
                               b'"Healthcheck":null,"Volumes":{"/a":null},"ExposedPorts":{"80/tcp":{}}}').config
    assert cfg == {"Image": "x", "Env": None, "Labels": None, "Healthcheck": None, "Volumes": {"/a": {}},
                   "ExposedPorts": {"80/tcp": {}}}
    cfg = bodies.decode_create(b'{"Image":"x","Labels":{"a":null}}').config
    assert cfg == {"Image": "x", "Labels": {"a": ""}}


def test_unknown_fields_are_dropped_and_names_match_case_insensitively() -> None:
    req = bodies.decode_create(b'{"image":"x","CMD":"ls","hostconfig":{"memory":5},"Whatever":[1,{"a":2}]}')
    assert req.config == {"Image": "x", "Cmd": ["ls"]}
    assert req.host_config == {"Memory": 5, "NetworkMode": "default"}
    assert bodies.decode_create(b'{"Image":"a","image":"b"}').config == {"Image": "b"}  # in order, as Go
    # Go's case folding also knows the Kelvin sign and the long s
    assert bodies.decode_create('{"Image":"x","\u212aernelMemory":1,"\u017fhell":"sh"}'.encode()).config == \
        {"Image": "x", "Shell": ["sh"]}


def test_duplicate_keys_are_decoded_in_order_and_objects_merge() -> None:
    cfg = bodies.decode_create(b'{"Image":"x","Cmd":"ls","Cmd":null,"Labels":{"a":"1"},"Labels":{"b":"2"}}').config
    assert cfg == {"Image": "x", "Cmd": None, "Labels": {"a": "1", "b": "2"}}


def test_the_deprecated_top_level_host_config_fields() -> None:
    req = bodies.decode_create(b'{"Image":"x","Memory":5,"CpuShares":3,"Cpuset":"1",'
                               b'"HostConfig":{"CpuShares":2,"NetworkMode":"host"}}')
    assert req.config == {"Image": "x"}
    assert req.host_config == {"CpuShares": 2, "NetworkMode": "host", "Memory": 5, "CpusetCpus": "1"}
    req = bodies.decode_create(b'{"Image":"x","Memory":5}')  # no inner HostConfig: the top-level one
    assert req.host_config == {"Memory": 5, "NetworkMode": "default"}
    req = bodies.decode_create(b'{"Image":"x"}')
    assert req.host_config is None and req.networking_config is None


def test_a_body_without_config_fields_has_no_config() -> None:
    for raw in (b"{}", b"null", b'{"HostConfig":{}}', b'{"Unknown":1}'):
        assert bodies.decode_create(raw).config is None
    assert bodies.decode_create(b'{"Cmd":null}').config == {"Cmd": None}  # Go allocates Config for the field


def test_numbers_take_the_field_type() -> None:
    hc = bodies.decode_create(b'{"HostConfig":{"Memory":-0,"ShmSize":9223372036854775807,"BlkioWeight":65535,'
                              b'"ConsoleSize":[1,2,"ignored"],"PidsLimit":5,"OomKillDisable":false}}').host_config
    assert hc == {"Memory": 0, "ShmSize": 9223372036854775807, "BlkioWeight": 65535, "ConsoleSize": [1, 2],
                  "PidsLimit": 5, "OomKillDisable": False, "NetworkMode": "default"}
    assert type(hc["Memory"]) is int
    assert bodies.decode_create(b'{"HostConfig":{"ConsoleSize":[7]}}').host_config == \
        {"ConsoleSize": [7, 0], "NetworkMode": "default"}
    assert _error('{"HostConfig":{"ShmSize":9223372036854775808}}').endswith("ShmSize of type int64")
    assert _error('{"HostConfig":{"Memory":"' + "1" * 5000 + '"}}').endswith("Memory of type int64")
    assert _error('{"HostConfig":{"Memory":' + "1" * 5000 + "}}").endswith("Memory of type int64")


def test_strings_are_decoded_as_go_decodes_them() -> None:
    assert bodies.decode_create(b'{"Image":"\\ud800x"}').config == {"Image": "\ufffdx"}  # a lone surrogate
    assert bodies.decode_create(b'{"Image":"\\ud83d\\ude00"}').config == {"Image": "\U0001f600"}
    assert bodies.decode_create(b'{"Image":"\xff\xe2\x82x"}').config == {"Image": "\ufffd\ufffd\ufffdx"}
    assert bodies.decode_create('{"Image":"é"}'.encode()).config == {"Image": "é"}


def test_loads_is_json_with_gos_limits() -> None:
    assert bodies.loads(b'{"a":[1,2.5,"x",true,null]}') == {"a": [1, 2.5, "x", True, None]}
    assert bodies.loads(" [1] ") == [1]
    deep = b"[" * 5_000 + b"]" * 5_000  # deeper than Python's own parser goes, within Go's limit
    value = bodies.loads(deep)
    for _ in range(4_999):
        value = value[0]
    assert value == []
    for raw, message in ((b"[" * 100_000, "invalid character '[' exceeded max depth"), (b"", "EOF"),
                         (b"{} {}", "unexpected content after JSON"), (b"[1,]", "invalid character ']' "
                                                                               "looking for beginning of value")):
        with pytest.raises(bodies.GoJSONError) as exc:
            bodies.loads(raw)
        assert str(exc.value) == message


@pytest.mark.parametrize("raw,go_type,expected", [
    ('{"A": "1", "B": null}', "map[string]*string", {"A": "1", "B": None}),
    ('{"A": "1", "B": null}', "map[string]string", {"A": "1", "B": ""}),
    ('["a", null]', "[]string", ["a", ""]),
    ('[{"Name": "nofile", "Soft": 10}]', "[]*units.Ulimit", [{"Name": "nofile", "Soft": 10}]),
    ("null", "map[string]string", None),
])
def test_decode_value_as_go_unmarshal(raw: str, go_type: str, expected: object) -> None:
    assert bodies.decode_value(raw, go_type) == expected


@pytest.mark.parametrize("raw,go_type,message", [
    ('{"A": 1}', "map[string]*string", "json: cannot unmarshal number into Go value of type string"),
    ('["a"]', "map[string]string", "json: cannot unmarshal array into Go value of type map[string]string"),
    ('[{"Hard": 1.5}]', "[]*units.Ulimit",
     "json: cannot unmarshal number 1.5 into Go struct field Ulimit.Hard of type int64"),
    ('{"A": "1"} x', "map[string]string", "invalid character 'x' after top-level value"),
    ('{"A": ', "map[string]string", "unexpected end of JSON input"),
    ("", "[]string", "unexpected end of JSON input"),
    ("[" * 20000, "[]string", "exceeded max depth"),
])
def test_decode_value_errors_are_gos(raw: str, go_type: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        bodies.decode_value(raw, go_type)
    assert message in str(info.value)
