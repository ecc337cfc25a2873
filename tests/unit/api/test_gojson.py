"""``oci.gojson.go_dumps``/``go_line`` against Go's own encoding/json, byte for byte.

A small Go program (standard library only, built with the host's Go toolchain) encodes the same values with
``json.Marshal`` (dockerd's streams: HTML escaped) and with a ``json.Encoder`` set to ``SetEscapeHTML(false)``
(dockerd's ``httputils.WriteJSON``: every plain answer). Strings go through as raw bytes, so bytes that are not
UTF-8 (``surrogateescape`` in Python) are compared too. Go before 1.22 wrote ``\\b`` and ``\\f`` as ``\\u0008`` and
``\\u000c``; dockerd 28 is built with a newer Go, which writes the short forms: a Go older than that has its output
read with that one difference mapped. Skipped (with the reason) only where no Go toolchain is installed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from typing import Any

import pytest

from dockwright.api.errors import error_line, json_body
from dockwright.api.streams import render
from dockwright.errors import NotFound
from dockwright.oci.gojson import go_dumps, go_line
from dockwright.progress import Aux, Progress

GO_PROGRAM = r"""
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
)

func both(v interface{}) string {
	marshal, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(marshal) + " " + base64.StdEncoding.EncodeToString(buf.Bytes())
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		kind, payload, _ := bytes.Cut(sc.Bytes(), []byte(" "))
		raw, err := base64.StdEncoding.DecodeString(string(payload))
		if err != nil {
			panic(err)
		}
		if string(kind) == "s" { // a string made of these bytes, valid UTF-8 or not
			fmt.Println(both(string(raw)))
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw)) // a JSON document: numbers as written, maps sorted
		dec.UseNumber()
		var v interface{}
		if err := dec.Decode(&v); err != nil {
			panic(err)
		}
		fmt.Println(both(v))
	}
}
"""

STRINGS: list[bytes] = [
    b"", b"plain", b"<none>:<none>", b"a&b", b"[=====>    ] 1.2MB/3MB", b'quote " backslash \\ slash /',
    "é ü ß 日本語 😀".encode(), "\u2028 line \u2029 para".encode(), b"\x00\x01\x07\x08\x09\x0a\x0b\x0c\x0d\x1b\x1f",
    b"\x7f del", "\u0080\u009f\u00a0\u00ad\ufeff\ufffd".encode(), b"bad \xff byte", b"\xc3", b"\xed\xa0\x80 cesu",
    b"\xe2\x80", b"mixed <\xe9> & \xe2\x80\xa8", b"</script><!-- -->", b"x" * 5000 + b"<" + b"y" * 5000,
]

DOCUMENTS: list[str] = [
    '{"message":"No such image: <none>"}',
    '[{"Containers":-1,"Created":1700000000,"Id":"sha256:abc","Labels":{"a":"<b>","z":"é"},"ParentId":"",'
    '"RepoDigests":[],"RepoTags":["x:1"],"SharedSize":-1,"Size":123}]',
    '{"status":"Loading layer","progressDetail":{"current":1,"total":2},"progress":"[\\u003e   ] 1B/2B","id":"ab"}',
    '{"errorDetail":{"code":3,"message":"The command \'/bin/sh -c exit 3\' returned a non-zero code: 3"},'
    '"error":"The command \'/bin/sh -c exit 3\' returned a non-zero code: 3"}',
    '{"a":[1,-2,9007199254740993,true,false,null,{},[]],"b":{"\\u2028k<":"v&"}}',
    '"just a string \\u0000 \\ud83d\\ude00"',
    '[]', 'null', '0', '{"nested":{"deeper":{"deepest":["<", ">", "&", "\\u2029"]}}}',
]


def go_version(go: str) -> tuple[int, int]:
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"go(\d+)\.(\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def go_encode(tmp_path_factory: pytest.TempPathFactory) -> Any:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain on this host (Go's encoding/json is the reference here)")
    work = tmp_path_factory.mktemp("gojson")
    (work / "main.go").write_text(GO_PROGRAM)
    env = {**os.environ, "GOCACHE": str(work / "cache"), "GOPATH": str(work / "gopath"), "GO111MODULE": "off",
           "GOFLAGS": "", "CGO_ENABLED": "0", "HOME": str(work)}
    subprocess.run([go, "build", "-o", str(work / "enc"), str(work / "main.go")], cwd=work, env=env, check=True,
                   capture_output=True, timeout=240)
    old_go = go_version(go) < (1, 22)

    def encode(lines: list[tuple[str, bytes]]) -> list[tuple[bytes, bytes]]:
        stdin = "".join(f"{kind} {base64.b64encode(raw).decode()}\n" for kind, raw in lines)
        out = subprocess.run([str(work / "enc")], input=stdin.encode(), capture_output=True, check=True,
                             timeout=60).stdout.decode().splitlines()
        pairs = []
        for line in out:
            marshal, encoder = (base64.b64decode(x) for x in line.split(" "))
            if old_go:  # Go >= 1.22 (dockerd 28's) writes \b and \f in their short forms
                marshal, encoder = (x.replace(b"\\u0008", b"\\b").replace(b"\\u000c", b"\\f")
                                    for x in (marshal, encoder))
            pairs.append((marshal, encoder))
        return pairs

    return encode


def sorted_maps(v: Any) -> Any:
    """Go writes a map's keys sorted: the Python value with its dicts in that order."""
    if isinstance(v, dict):
        return {k: sorted_maps(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [sorted_maps(x) for x in v]
    return v


def test_strings_as_go_writes_them(go_encode: Any) -> None:
    expected = go_encode([("s", raw) for raw in STRINGS])
    assert len(expected) == len(STRINGS)
    for raw, (marshal, encoder) in zip(STRINGS, expected, strict=True):
        s = raw.decode("utf-8", "surrogateescape")
        assert go_dumps(s) == marshal, raw
        assert go_dumps(s, escape_html=False) + b"\n" == encoder, raw
        assert go_line(s) == marshal + b"\n"
        assert go_line(s, b"\r\n", escape_html=False) == encoder[:-1] + b"\r\n"


def test_documents_as_go_writes_them(go_encode: Any) -> None:
    expected = go_encode([("j", doc.encode()) for doc in DOCUMENTS])
    for doc, (marshal, encoder) in zip(DOCUMENTS, expected, strict=True):
        value = sorted_maps(json.loads(doc))
        assert go_dumps(value) == marshal, doc
        assert go_dumps(value, escape_html=False) + b"\n" == encoder, doc


def test_go_escapes() -> None:
    """The rules themselves, for a host without Go: compact, HTML escaped or not, U+2028/9 always escaped,
    non-ASCII as UTF-8, a byte that is not UTF-8 as \\ufffd."""
    v = {"k<": ["<a&b>", "é\u2028\u2029", "bad \udcff", 1, None, True]}
    assert go_dumps(v) == ('{"k\\u003c":["\\u003ca\\u0026b\\u003e","é\\u2028\\u2029","bad \\ufffd",1,null,true]}'
                           .encode())
    assert go_dumps(v, escape_html=False) == '{"k<":["<a&b>","é\\u2028\\u2029","bad \\ufffd",1,null,true]}'.encode()
    assert go_dumps("\b\f\n\r\t\x00\x1f\x7f") == b'"\\b\\f\\n\\r\\t\\u0000\\u001f\x7f"'
    assert go_dumps("\ud800") == "\"\ufffd\"".encode()  # a lone surrogate Go's decoder would have made U+FFFD


def test_api_bodies_use_go_bytes() -> None:
    """json_body (httputils.WriteJSON: no HTML escaping, a newline), stream messages (json.Marshal, CRLF) and the
    in-band error line, with JSONMessage's key order."""
    resp = json_body({"message": "No such image: <a&b> é"}, 404)
    assert resp.body == '{"message":"No such image: <a&b> é"}\n'.encode()
    assert resp.status == 404 and resp.content_type == "application/json"
    assert error_line(NotFound("x <y>")) == (
        b'{"errorDetail":{"message":"x \\u003cy\\u003e"},"error":"x \\u003cy\\u003e"}\r\n')
    assert go_line(render(Progress("Loading layer", "abc", 32768, 1996800)), b"\r\n") == (
        b'{"status":"Loading layer","progressDetail":{"current":32768,"total":1996800},"progress":"[\\u003e'
        + b" " * 50 + b']  32.77kB/1.997MB","id":"abc"}\r\n')
    assert render(Aux({"ID": "sha256:1"}), bare_aux=True) == {"aux": {"ID": "sha256:1"}}
    assert render(Aux({"Tag": "1"})) == {"progressDetail": {}, "aux": {"Tag": "1"}}
    assert render(Aux({"x": 1}, "moby.image.id")) == {"id": "moby.image.id", "aux": {"x": 1}}
